"""docs/DESIGN.md's state table end to end (webhook, stand-in, PostgreSQL): a few rows of each
table, every mismatch, and what only the database shows (stored facts, refunds, retries)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import Engine

from paystore.devtools.standin import StripeStandIn
from paystore.devtools.standin.objects import refund
from tests.lifecycle_events import Purchase
from tests.lifecycle_table import BACKWARDS, MISMATCHES, STATE_TABLE
from tests.support.api import Api
from tests.support.database import count, purchase_row


@pytest.fixture
def purchase(api: Api, standin: StripeStandIn) -> Purchase:
    return Purchase.checkout(api, standin, "user_1")


def deliver(standin: StripeStandIn, purchase: Purchase, kind: str, **changes: object) -> str:
    answer = standin.deliver(purchase.event(kind, **changes))
    assert answer.status_code == 200, answer.text
    return answer.json()["outcome"]


# End to end, a few rows of each table (every row runs against lifecycle.apply in tests/unit).
SMOKE_STATE_ROWS = [STATE_TABLE[i] for i in (0, 1, 4, 7, 9, 11, 13)]


@pytest.mark.parametrize(("before", "kind", "outcome", "status"), SMOKE_STATE_ROWS)
def test_state_table_row(
    standin: StripeStandIn, engine: Engine, purchase: Purchase, before: list[str], kind: str, outcome: str, status: str
) -> None:
    for earlier in before:
        deliver(standin, purchase, earlier)

    assert deliver(standin, purchase, kind) == outcome
    assert purchase_row(engine, purchase.purchase_id)["status"] == status


SMOKE_BACKWARDS_ROWS = [BACKWARDS[i] for i in (0, 5, 8, 11)]


@pytest.mark.parametrize(("happened", "late", "status"), SMOKE_BACKWARDS_ROWS)
def test_late_event_never_moves_a_purchase_backwards(
    standin: StripeStandIn, engine: Engine, purchase: Purchase, happened: list[str], late: str, status: str
) -> None:
    for kind in happened:
        deliver(standin, purchase, kind)
    before = purchase_row(engine, purchase.purchase_id)

    assert deliver(standin, purchase, late) == "stale"

    after = purchase_row(engine, purchase.purchase_id)
    assert after["status"] == status
    assert {k: v for k, v in after.items() if k != "updated_at"} == {k: v for k, v in before.items() if k != "updated_at"}
    assert count(engine, "SELECT count(*) FROM stripe_events WHERE outcome = 'stale'") == 1


def test_partial_refunds_accumulate_then_a_full_refund_refunds(
    standin: StripeStandIn, engine: Engine, purchase: Purchase
) -> None:
    deliver(standin, purchase, "completed_paid")
    charge = standin.charge(purchase.payment_intent, purchase.amount)
    made = [refund(charge, amount) for amount in (1000, 500, purchase.amount - 1500)]

    def refunded(*refunds: dict) -> str:  # the charge with its refunds listed (an older API version's shape)
        charge.update(amount_refunded=sum(r["amount"] for r in refunds), refunds={"data": list(refunds), "has_more": False})
        return standin.deliver(standin.event("charge.refunded", charge)).json()["outcome"]

    assert refunded(made[0]) == "partially_refunded"
    assert purchase_row(engine, purchase.purchase_id)["refunded_amount"] == 1000
    assert refunded(made[0], made[1]) == "partially_refunded"
    assert refunded(made[0]) == "stale"  # an older snapshot arriving late
    row = purchase_row(engine, purchase.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("completed", 1500)
    assert refunded(*made) == "refunded"


@pytest.mark.parametrize(("changes", "reason"), MISMATCHES)
def test_completion_that_does_not_match_the_purchase_needs_review(
    standin: StripeStandIn, engine: Engine, purchase: Purchase, caplog: pytest.LogCaptureFixture, changes: dict, reason: str
) -> None:
    caplog.set_level(logging.ERROR, logger="paystore")

    assert deliver(standin, purchase, "completed_paid", **changes) == "needs_review"

    row = purchase_row(engine, purchase.purchase_id)
    assert row["status"] == "needs_review" and reason in row["review_reason"]
    # Money was taken (the fact is kept for the operator), but nothing is granted.
    assert row["payment"] == "paid" and row["completed_at"] is None
    assert any(r.levelno == logging.ERROR and "needs review" in r.getMessage() for r in caplog.records)
    # needs_review grants nothing, and later events do not clear it.
    assert deliver(standin, purchase, "async_succeeded") == "stale"
    assert purchase_row(engine, purchase.purchase_id)["status"] == "needs_review"


def test_charge_event_before_its_purchase_is_known_is_retried_not_dropped(
    standin: StripeStandIn, engine: Engine, purchase: Purchase
) -> None:
    early = purchase.event("refund_full")

    first = standin.deliver(early)

    assert first.status_code == 503 and first.json()["error"]["code"] == "purchase_not_yet_known"
    assert count(engine, "SELECT count(*) FROM stripe_events") == 0
    deliver(standin, purchase, "completed_paid")
    retried = standin.deliver(early)
    assert (retried.status_code, retried.json()["outcome"]) == (200, "refunded")


def test_awaiting_payment_then_expiry_of_nothing(standin: StripeStandIn, engine: Engine, purchase: Purchase) -> None:
    """A session completed with a delayed method cannot expire any more (Stripe): stale."""
    deliver(standin, purchase, "completed_unpaid")
    assert deliver(standin, purchase, "expired") == "stale"
    assert purchase_row(engine, purchase.purchase_id)["status"] == "awaiting_payment"


def test_user_purchases_newest_first(api: Api, standin: StripeStandIn) -> None:
    first = Purchase.checkout(api, standin, "user_9", "prog_py101")
    second = Purchase.checkout(api, standin, "user_9", "prog_rust")
    Purchase.checkout(api, standin, "someone_else", "prog_py101")
    deliver(standin, first, "completed_paid")

    listed = api.get("/users/user_9/purchases")

    assert listed.status_code == 200
    assert [p["purchase_id"] for p in listed.json()["purchases"]] == [second.purchase_id, first.purchase_id]
    assert listed.json()["purchases"][1]["status"] == "completed"
    assert api.get("/users/nobody/purchases").json() == {"purchases": []}
