"""Money back: refunds as facts per refund (one that fails stops counting, and the shop is told),
refunds the shop starts (idempotent, applied at once), and the lock that keeps two reports of one
refund from overwriting each other."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, text

from paystore.devtools.standin import StripeStandIn
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.negative_controls import remove_the_lock_and_meet_before_applying
from tests.support.processes import paystore_cli
from tests.support.refund_journeys import ask, deliver_all, notified, paid, refund_creates


def test_a_refund_that_fails_after_the_purchase_went_refunded_brings_it_back_and_the_shop_is_told(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = paid(api, standin, "user_fails")
    assert deliver_all(standin, standin.actions.refund(journey.session["id"])) == ["refunded", "stale"]

    outcomes = deliver_all(standin, standin.actions.fail_refund(journey.session["id"]))

    assert outcomes == ["completed", "stale", "stale"]  # refund.failed, refund.updated, charge.refund.updated
    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("completed", 0)
    assert notified(engine, journey.purchase_id) == [
        ("purchase.completed", "pending"), ("purchase.refunded", "completed"),
        ("purchase.refund_failed", "failed"), ("purchase.completed", "refunded"),
    ]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status, failure_reason FROM refunds")).one() == ("failed", "expired_or_canceled_card")


def test_the_same_refund_events_in_another_order_end_the_same(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    journey = paid(api, standin, "user_order")
    created = standin.actions.refund(journey.session["id"], 1000)
    failed = standin.actions.fail_refund(journey.session["id"])
    second = standin.actions.refund(journey.session["id"], 2000)

    deliver_all(standin, [*failed, *second, *created, *failed])  # the failure first, the creation last

    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("completed", 2000)
    assert count(engine, "SELECT count(*) FROM refunds") == 2


def test_negative_control_without_the_lock_a_late_report_overwrites_the_failure(
    api: Api, standin: StripeStandIn, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """refund.created and refund.failed of one refund at once: both read the refund unknown; the
    failure is written first, the older report last, and the failed refund counts again."""
    journey = paid(api, standin, "user_race")
    created, _ = standin.actions.refund(journey.session["id"])
    failed = standin.actions.fail_refund(journey.session["id"])[0]
    failure_written = threading.Event()

    def creation_writes_last(learn: Any) -> None:
        cells = dict(zip(learn.__code__.co_freevars, learn.__closure__, strict=True))
        known = cells["known"].cell_contents
        if any(refund.status == "succeeded" for refund in known.values()):  # the handler of refund.created
            assert failure_written.wait(20)

    remove_the_lock_and_meet_before_applying(monkeypatch, parties=2, then=creation_writes_last)
    results: dict[str, requests.Response] = {}

    def send(name: str, event: dict[str, Any]) -> None:
        results[name] = standin.deliver(event)
        if name == "failed":
            failure_written.set()

    threads = [threading.Thread(target=send, args=(name, event)) for name, event in (("created", created), ("failed", failed))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM refunds")).scalar()
    assert (status, purchase_row(engine, journey.purchase_id)["status"]) == ("succeeded", "refunded"), \
        "no lost update: the race did not show"


# ---------------------------------------------------------------- refunds the shop starts
def test_a_shop_refund_is_made_once_per_key_and_applied_at_once(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    journey = paid(api, standin, "user_shop")
    standin.faults.deliver_api_events = False  # applied from Stripe's answer, not from its events

    first = ask(api, journey.purchase_id, "support-ticket-1", {"amount": 1500, "reason": "requested_by_customer"})
    again = ask(api, journey.purchase_id, "support-ticket-1", {"amount": 1500, "reason": "requested_by_customer"})

    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert first.json()["refund"] == again.json()["refund"]
    assert first.json()["refund"]["amount"] == 1500 and first.json()["refund"]["status"] == "succeeded"
    assert (first.json()["purchase"]["status"], first.json()["purchase"]["refunded_amount"]) == ("completed", 1500)
    assert [c["path"] for c in standin.state.api_calls if c["path"] == "/v1/refunds"] == ["/v1/refunds"]
    # The refund's own events, delivered later, add nothing.
    assert set(deliver_all(standin, list(standin.state.events.values())[1:])) == {"stale"}
    rest = ask(api, journey.purchase_id, "support-ticket-2")
    assert (rest.status_code, rest.json()["refund"]["amount"], rest.json()["purchase"]["status"]) == (202, 3400, "refunded")

@pytest.mark.parametrize(("body", "key", "status", "code"), [
    ({"amount": 1500}, "k-other-body", 409, "idempotency_key_reused"),
    ({"amount": 99999}, "k-too-much", 400, "refund_exceeds_remaining"),
    ({"amount": -1}, "k-negative", 400, "invalid_body"),
    ({"reason": "changed_my_mind"}, "k-reason", 400, "invalid_body"),
    (None, None, 400, "idempotency_key_required"),
])
def test_a_refund_request_that_cannot_be_is_refused_and_refunds_nothing(
    api: Api, standin: StripeStandIn, engine: Engine, body: Any, key: str | None, status: int, code: str
) -> None:
    journey = paid(api, standin, f"user_{code}")
    if code == "idempotency_key_reused":
        assert ask(api, journey.purchase_id, key, {"amount": 1000}).status_code == 202
    calls = refund_creates(standin)

    answer = ask(api, journey.purchase_id, key, body)

    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text
    assert refund_creates(standin) == calls  # Stripe was not asked
    assert count(engine, "SELECT count(*) FROM refunds") == (1 if code == "idempotency_key_reused" else 0)


def test_an_unpaid_purchase_cannot_be_refunded(api: Api, standin: StripeStandIn) -> None:
    journey = Purchase.checkout(api, standin, "user_unpaid")

    answer = ask(api, journey.purchase_id, "k1")

    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "purchase_not_refundable")


def test_stripe_down_is_a_502_and_nothing_is_recorded(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    journey = paid(api, standin, "user_down")
    standin.faults.refund.append(500)

    answer = ask(api, journey.purchase_id, "k-down")

    assert (answer.status_code, answer.json()["error"]["code"]) == (502, "stripe_unavailable")
    assert count(engine, "SELECT count(*) FROM refunds") == count(engine, "SELECT count(*) FROM refund_requests") == 0
    assert ask(api, journey.purchase_id, "k-down").status_code == 202  # the same key, once Stripe is back


def test_the_cli_refunds_a_purchase(api: Api, standin: StripeStandIn, cli_env: dict[str, str], engine: Engine) -> None:
    journey = paid(api, standin, "user_cli")

    result = paystore_cli(cli_env, "refunds", "create", journey.purchase_id, "--amount", "900")

    assert result.returncode == 0, result.stderr
    assert "900 usd succeeded" in result.stdout
    assert purchase_row(engine, journey.purchase_id)["refunded_amount"] == 900

# ---------------------------------------------------------------- an old purchase cannot become active beside a new one
def test_a_refund_that_fails_after_the_user_bought_again_sends_the_old_purchase_to_review(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    first = paid(api, standin, "user_twice")
    assert deliver_all(standin, standin.actions.refund(first.session["id"])) == ["refunded", "stale"]
    again = paid(api, standin, "user_twice")

    outcomes = deliver_all(standin, standin.actions.fail_refund(first.session["id"]))

    assert outcomes == ["needs_review", "stale", "stale"]
    old, new = purchase_row(engine, first.purchase_id), purchase_row(engine, again.purchase_id)
    assert (old["status"], old["refunded_amount"], new["status"]) == ("needs_review", 0, "completed")
    assert again.purchase_id in old["review_reason"]
    assert notified(engine, first.purchase_id)[-2:] == [("purchase.refund_failed", "failed"),
                                                        ("purchase.needs_review", "refunded")]
    assert api.get("/users/user_twice/programs/prog_py101/access").json()["access"] is True


# ---------------------------------------------------------------- Stripe refusing a refund
def test_stripe_refusing_a_refund_is_a_409_that_records_nothing(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    journey = paid(api, standin, "user_refused")
    assert deliver_all(standin, standin.actions.open_dispute(journey.session["id"])) == ["disputed"]

    answer = ask(api, journey.purchase_id, "k-refused", {"amount": 1000})

    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "refund_refused"), answer.text
    message = answer.json()["error"]["message"]
    assert "charged back" in message and "k-refused" not in message and "sk_" not in message
    assert count(engine, "SELECT count(*) FROM refunds") == count(engine, "SELECT count(*) FROM refund_requests") == 0
