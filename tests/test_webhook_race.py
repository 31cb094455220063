"""The field checklist: the webhook races checkout and still completes the purchase.

Each race is forced, not hoped for: the Stripe stand-in delivers the signed webhook to paystore
*before* it answers the session-create call, and only answers once PostgreSQL shows the webhook
parked (an ungranted advisory lock in pg_locks) or finished. Every race has a negative control:
the same scenario with the lock made a no-op must show the lost sale.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, text

from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.store import locks
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.locks import WebhookFirst, someone_waits_for
from tests.support.negative_controls import no_lock, remove_the_lock_and_meet_before_applying


def test_a_webhook_before_stripe_answers_waits_for_checkout_commit(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    hook = WebhookFirst(standin, engine)
    standin.faults.before_create_response = hook

    checkout = api.checkout()
    webhook = hook.webhook_answer()

    assert checkout.status_code == 201, checkout.text
    assert hook.seen_waiting, "the webhook never waited on the purchase lock"
    assert webhook.status_code == 200, webhook.text
    assert webhook.json()["outcome"] == "completed"
    purchase_id = checkout.json()["purchase_id"]
    assert purchase_row(engine, purchase_id)["status"] == "completed"
    wait_ms = count(engine, "SELECT lock_wait_ms FROM stripe_events WHERE purchase_id = :p", p=purchase_id)
    assert wait_ms > 0


def test_a_negative_control_without_the_lock_the_paid_purchase_is_stuck(
    api: Api, standin: StripeStandIn, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(locks, "take_xact_lock", no_lock)
    hook = WebhookFirst(standin, engine)
    standin.faults.before_create_response = hook

    checkout = api.checkout()
    webhook = hook.webhook_answer()

    # The race, observed: the webhook read no purchase while checkout's insert was uncommitted,
    # so it could not complete it; the paid purchase stays pending until some later retry.
    assert checkout.status_code == 201, checkout.text
    assert not hook.seen_waiting
    assert webhook.status_code >= 500 or webhook.json()["outcome"] != "completed", webhook.text
    assert purchase_row(engine, checkout.json()["purchase_id"])["status"] == "pending"


def test_b_checkout_held_500ms_after_insert_webhook_waits_then_completes(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    hook = WebhookFirst(standin, engine)
    standin.faults.before_create_response = hook
    standin.faults.create_delay_s = 0.6  # after the webhook is parked: checkout holds the lock >= 600 ms

    checkout = api.checkout()
    webhook = hook.webhook_answer()

    assert checkout.status_code == 201 and webhook.status_code == 200, (checkout.text, webhook.text)
    assert webhook.json()["outcome"] == "completed"
    purchase_id = checkout.json()["purchase_id"]
    assert purchase_row(engine, purchase_id)["status"] == "completed"
    wait_ms = count(engine, "SELECT lock_wait_ms FROM stripe_events WHERE purchase_id = :p", p=purchase_id)
    assert wait_ms >= 500


def _paid_purchase(api: Api, standin: StripeStandIn) -> tuple[str, dict[str, Any]]:
    checkout = api.checkout()
    assert checkout.status_code == 201, checkout.text
    return checkout.json()["purchase_id"], standin.settle(checkout.json()["stripe_session_id"])


def _deliver_concurrently(standin: StripeStandIn, events: list[dict[str, Any]]) -> list[requests.Response]:
    with ThreadPoolExecutor(len(events)) as pool:
        return list(pool.map(standin.deliver, events))


def test_c_five_concurrent_deliveries_of_one_event_make_one_transition(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    purchase_id, session = _paid_purchase(api, standin)
    event = standin.event("checkout.session.completed", session)

    answers = _deliver_concurrently(standin, [event] * 5)

    assert [a.status_code for a in answers] == [200] * 5
    assert sorted(a.json()["outcome"] for a in answers) == ["completed"] + ["duplicate"] * 4
    assert count(engine, "SELECT count(*) FROM stripe_events") == 1
    assert purchase_row(engine, purchase_id)["status"] == "completed"


def test_c_five_different_events_for_one_session_make_one_transition(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    purchase_id, session = _paid_purchase(api, standin)
    events = [standin.event("checkout.session.completed", session) for _ in range(5)]

    answers = _deliver_concurrently(standin, events)

    assert [a.status_code for a in answers] == [200] * 5
    assert sorted(a.json()["outcome"] for a in answers) == ["completed"] + ["stale"] * 4
    assert count(engine, "SELECT count(*) FROM stripe_events") == 5
    row = purchase_row(engine, purchase_id)
    assert row["status"] == "completed"


def test_c_negative_control_without_the_lock_different_events_double_apply(
    api: Api, standin: StripeStandIn, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the lock, five handlers read the same pending purchase and all 'complete' it.

    A barrier inside the handler (after the read, before the write) forces the interleaving that
    the lock forbids; with the lock in place only one handler could ever reach it at a time.
    """
    purchase_id, session = _paid_purchase(api, standin)
    events = [standin.event("checkout.session.completed", session) for _ in range(5)]
    remove_the_lock_and_meet_before_applying(monkeypatch, parties=5)

    answers = _deliver_concurrently(standin, events)

    outcomes = [a.json()["outcome"] for a in answers if a.status_code == 200]
    assert outcomes.count("completed") > 1, f"no double transition observed: {outcomes}"


def test_c_without_the_lock_the_event_record_still_dedups_one_event(
    api: Api, standin: StripeStandIn, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same-id redeliveries have a second line of defence: the unique Stripe event id."""
    monkeypatch.setattr(locks, "take_xact_lock", no_lock)
    purchase_id, session = _paid_purchase(api, standin)
    event = standin.event("checkout.session.completed", session)

    answers = _deliver_concurrently(standin, [event] * 5)

    assert sorted(a.json()["outcome"] for a in answers) == ["completed"] + ["duplicate"] * 4
    assert count(engine, "SELECT count(*) FROM stripe_events") == 1


def test_d_legacy_session_without_purchase_id_completes_by_session_id(
    api: Api, standin: StripeStandIn, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    purchase_id, session = _paid_purchase(api, standin)
    session["metadata"] = {}  # created by the pre-paystore checkout, which set no metadata
    caplog.set_level(logging.INFO, logger="paystore")

    answer = standin.deliver(standin.event("checkout.session.completed", session))

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"outcome": "completed", "event_id": answer.json()["event_id"], "purchase_id": purchase_id}
    assert purchase_row(engine, purchase_id)["status"] == "completed"
    legacy_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Using legacy lock")]
    assert legacy_lines and legacy_lines[0].startswith(f"Using legacy lock (no purchase_id): webhook:session:{session['id']}")
    assert "waited" in legacy_lines[0] and " ms" in legacy_lines[0]


def test_d_unified_lock_line_is_logged_with_the_wait(
    api: Api, standin: StripeStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    purchase_id, session = _paid_purchase(api, standin)
    caplog.set_level(logging.INFO, logger="paystore")

    assert standin.deliver(standin.event("checkout.session.completed", session)).status_code == 200

    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Using unified lock")]
    assert lines and lines[0].startswith(f"Using unified lock: purchase:complete:{purchase_id} (waited ")


def test_legacy_session_matching_no_purchase_is_retried_not_recorded(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    session = standin.settle(standin.new_session({"mode": "payment"})["id"])

    answer = standin.deliver(standin.event("checkout.session.completed", session))

    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "purchase_not_yet_known"
    assert count(engine, "SELECT count(*) FROM stripe_events") == 0


def test_d_legacy_event_also_waits_for_the_purchase_lock(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    """Charge events, reconcile and checkout write a purchase under its purchase lock; a legacy
    session event must wait for it too, or their updates could interleave."""
    purchase_id, session = _paid_purchase(api, standin)
    session["metadata"] = {}
    key = locks.purchase_lock_key(purchase_id)

    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": locks.advisory_key_number(key)})
        answer = standin.deliver_async(standin.event("checkout.session.completed", session))
        wait_until(lambda: someone_waits_for(engine, key) or answer.done())
        assert not answer.done(), "the legacy event did not wait for the purchase lock"
        holder.rollback()

    assert answer.result(timeout=30).json()["outcome"] == "completed"
    assert purchase_row(engine, purchase_id)["status"] == "completed"
