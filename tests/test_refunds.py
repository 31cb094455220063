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


def paid(api: Api, standin: StripeStandIn, user_id: str) -> Purchase:
    journey = Purchase.checkout(api, standin, user_id)
    [completed] = standin.actions.pay_by_card(journey.session["id"])
    assert standin.deliver(completed).json()["outcome"] == "completed"
    return journey


def deliver_all(standin: StripeStandIn, events: list[dict[str, Any]]) -> list[str]:
    answers = [standin.deliver(event) for event in events]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [a.json()["outcome"] for a in answers]


def notified(engine: Engine, purchase_id: str) -> list[tuple[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT body::jsonb FROM notifications WHERE purchase_id = :p ORDER BY created_at"),
                            {"p": purchase_id}).scalars().all()
    return [(b["type"], b["data"].get("previous_status") or (b["data"].get("refund") or {}).get("status")) for b in rows]


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
def ask(api: Api, purchase_id: str, key: str | None, body: dict[str, Any] | None = None) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return api.post(f"/purchases/{purchase_id}/refunds", body, headers=headers)


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


def refund_creates(standin: StripeStandIn) -> int:
    return sum(1 for c in standin.state.api_calls if (c["method"], c["path"]) == ("POST", "/v1/refunds"))


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


# ---------------------------------------------------------------- charge.refunded as the pinned version sends it
def charge_refunded_only(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [e for e in events if e["type"] == "charge.refunded"]
    assert found and all("refunds" not in e["data"]["object"] for e in found)  # no list, as at the pinned version
    return found


@pytest.mark.parametrize("order", ["made", "reversed", "interleaved"])
def test_part_refunds_seen_only_through_charge_refunded_end_refunded_and_never_come_back(
    api: Api, standin: StripeStandIn, engine: Engine, order: str
) -> None:
    """300 then 4600, and Stripe sends only `charge.refunded` (an endpoint not subscribed to refund.*):
    paystore lists the charge's refunds each time, so the amount is right whatever the order."""
    journey = paid(api, standin, f"user_listed_{order}")
    first = charge_refunded_only(standin.actions.refund(journey.session["id"], 300))
    if order == "interleaved":  # the first event is handled before the second refund exists
        assert deliver_all(standin, first) == ["partially_refunded"]
    second = charge_refunded_only(standin.actions.refund(journey.session["id"], 4600))
    events = {"made": first + second, "reversed": second + first, "interleaved": second + first}[order]

    outcomes = deliver_all(standin, events)

    expected = {"made": ["refunded", "stale"], "reversed": ["refunded", "stale"], "interleaved": ["refunded", "duplicate"]}
    assert outcomes == expected[order]
    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("refunded", 4900)
    assert [t for t, _ in notified(engine, journey.purchase_id)] == ["purchase.completed", "purchase.refunded"]
    assert any(c["method"] == "GET" and c["path"] == "/v1/refunds" for c in standin.state.api_calls)


def test_a_failed_refund_seen_only_through_the_list_is_not_counted(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    journey = paid(api, standin, "user_listed_failed")
    created = charge_refunded_only(standin.actions.refund(journey.session["id"], 1000))
    standin.actions.fail_refund(journey.session["id"])  # its refund.* events are never delivered

    assert deliver_all(standin, created) == ["refund_failed"]

    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("completed", 0)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT amount, status FROM refunds")).one() == (1000, "failed")


def test_stripe_unreachable_while_listing_is_a_5xx_and_records_nothing(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = paid(api, standin, "user_listed_down")
    [event] = charge_refunded_only(standin.actions.refund(journey.session["id"]))
    standin.state.refund_list_fault = 500

    answer = standin.deliver(event)

    assert answer.status_code >= 500 and answer.json()["error"]["code"] == "stripe_unavailable"
    assert count(engine, "SELECT count(*) FROM stripe_events WHERE type = 'charge.refunded'") == 0
    assert count(engine, "SELECT count(*) FROM refunds") == 0
    standin.state.refund_list_fault = None
    assert deliver_all(standin, [event]) == ["refunded"]  # Stripe's retry


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


# ---------------------------------------------------------------- Adaptive Pricing: the buyer's currency
def paid_in(api: Api, standin: StripeStandIn, user_id: str, currency: str) -> Purchase:
    journey = Purchase.checkout(api, standin, user_id)
    standin.actions.choose(journey.session["id"], currency=currency)
    [completed] = standin.actions.pay_by_card(journey.session["id"])
    assert standin.deliver(completed).json()["outcome"] == "completed"
    charge = standin.state.charges[completed["data"]["object"]["payment_intent"]]
    assert charge["currency"] == currency  # Stripe charges, and refunds, the buyer in their own currency
    return journey


def test_adaptive_pricing_refunded_in_full_in_the_buyers_currency_is_refunded(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = paid_in(api, standin, "user_chf", "chf")  # 4900 usd, 4312 chf

    assert deliver_all(standin, standin.actions.refund(journey.session["id"])) == ["refunded", "stale"]

    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"], row["amount_total"], row["presentment_amount"]) == (
        "refunded", 4312, 4900, 4312)


def test_adaptive_pricing_a_partial_refund_is_partial_and_the_cap_is_in_the_buyers_currency(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = paid_in(api, standin, "user_jpy", "jpy")  # 4900 usd, 7350 jpy
    standin.faults.deliver_api_events = False

    part = ask(api, journey.purchase_id, "jpy-1", {"amount": 5000})  # more than 4900, less than 7350
    assert (part.status_code, part.json()["purchase"]["status"]) == (202, "completed"), part.text
    too_much = ask(api, journey.purchase_id, "jpy-2", {"amount": 2351})
    assert (too_much.status_code, too_much.json()["error"]["code"]) == (400, "refund_exceeds_remaining")
    rest = ask(api, journey.purchase_id, "jpy-3", {"amount": 2350})
    assert (rest.status_code, rest.json()["purchase"]["status"]) == (202, "refunded"), rest.text


def test_a_refund_in_another_currency_than_the_charge_sends_the_purchase_to_review(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = paid_in(api, standin, "user_chf_usd", "chf")
    [created, _] = standin.actions.refund(journey.session["id"], 1000)
    created["data"]["object"]["currency"] = "usd"  # not the charge's: it cannot be added up with chf

    assert deliver_all(standin, [created]) == ["needs_review"]

    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("needs_review", 0)
    assert "is in usd, the charge in chf" in row["review_reason"]
