"""Two refunds the shop asks for at once, with different Idempotency-Keys, that together ask for more
than is left: the purchase's refund lock (locks.refund_lock_key) lets one check-and-ask at a time,
so the second sees what the first took and is refused before Stripe is asked. Without the lock
both pass the check and both reach Stripe, which refuses the one too many."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.store import locks
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.locks import someone_waits_for
from tests.support.negative_controls import no_lock

AMOUNT = 3000  # twice is more than the 4900 paid


def paid(api: Api, standin: StripeStandIn, user_id: str) -> Purchase:
    journey = Purchase.checkout(api, standin, user_id)
    [completed] = standin.actions.pay_by_card(journey.session["id"])
    assert standin.deliver(completed).json()["outcome"] == "completed"
    standin.faults.deliver_api_events = False  # applied from Stripe's answers; their events do not matter here
    return journey


def two_refunds_at_once(api: Api, journey: Purchase) -> list[requests.Response]:
    def ask(key: str) -> requests.Response:
        return api.post(f"/purchases/{journey.purchase_id}/refunds", {"amount": AMOUNT}, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(ask, ["ticket-a", "ticket-b"]))


def test_two_refunds_at_once_never_ask_stripe_for_more_than_is_left(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = paid(api, standin, "user_race_refunds")
    key = locks.refund_lock_key(journey.purchase_id)
    asked: list[int | None] = []
    seen_waiting = threading.Event()

    def hold_until_the_other_waits(intent: str, amount: int | None) -> None:
        asked.append(amount)
        if not seen_waiting.is_set():  # the first at Stripe: the other request must be parked on the lock
            wait_until(lambda: someone_waits_for(engine, key), timeout=30)
            seen_waiting.set()

    standin.state.before_refund = hold_until_the_other_waits

    answers = two_refunds_at_once(api, journey)

    assert seen_waiting.is_set(), "the second refund never waited for the refund lock"
    assert sorted(a.status_code for a in answers) == [202, 400], [a.text for a in answers]
    [refused] = [a for a in answers if a.status_code == 400]
    assert refused.json()["error"]["code"] == "refund_exceeds_remaining"
    assert asked == [AMOUNT]  # Stripe was asked once, for no more than was left
    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("completed", AMOUNT)
    assert count(engine, "SELECT count(*) FROM refund_requests") == 1


def test_negative_control_without_the_refund_lock_stripe_is_asked_for_more_than_is_left(
    api: Api, standin: StripeStandIn, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    journey = paid(api, standin, "user_race_refunds_nc")
    real_lock = locks.take_xact_lock

    def lock_all_but_refunds(db: Any, key: str, timeout_ms: int) -> float:
        return no_lock(db, key, timeout_ms) if key.startswith("purchase:refund:") else real_lock(db, key, timeout_ms)

    monkeypatch.setattr(locks, "take_xact_lock", lock_all_but_refunds)
    asked: list[int | None] = []
    both_at_stripe = threading.Barrier(2, timeout=20)

    def meet_at_stripe(intent: str, amount: int | None) -> None:
        asked.append(amount)
        both_at_stripe.wait()

    standin.state.before_refund = meet_at_stripe

    answers = two_refunds_at_once(api, journey)

    # Both passed paystore's check on the same "4900 left" and both reached Stripe: together they
    # asked for 6000 of a 4900 payment, and Stripe had to refuse one.
    assert asked == [AMOUNT, AMOUNT], "the race did not show: Stripe was not asked twice"
    assert sum(a or 0 for a in asked) > 4900
    assert sorted(a.status_code for a in answers) == [202, 409], [a.text for a in answers]
    [refused] = [a for a in answers if a.status_code == 409]
    assert refused.json()["error"]["code"] == "refund_refused"
