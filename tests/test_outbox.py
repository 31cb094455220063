"""Every purchase status change writes one notification in its own transaction: the body is the
purchase exactly as the API shows it, and a rolled-back change writes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from paystore.db import WriteBehindTheStore
from paystore.devtools.standin import StripeStandIn
from paystore.domain import lifecycle
from paystore.domain.purchase import PaymentFact, PurchaseStatus
from paystore.extension import Paystore
from paystore.models import NotificationRow, PurchaseRow, RefundRow
from paystore.store import purchases
from tests.lifecycle_events import Purchase as Journey
from tests.support.api import Api
from tests.support.database import count, purchase_row


def notification_bodies(engine: Engine, purchase_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, type, body::jsonb AS body FROM notifications WHERE purchase_id = :p ORDER BY created_at"),
            {"p": purchase_id},
        ).all()
    assert all(str(r.id) == r.body["id"] and r.type == r.body["type"] for r in rows)
    return [r.body for r in rows]


def test_a_purchase_life_writes_one_notification_per_status_change(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    journey = Journey.checkout(api, standin, "user_life")
    for kind in ("completed_paid", "completed_paid", "dispute_created", "dispute_won", "refund_partial", "refund_full"):
        assert standin.deliver(journey.event(kind)).status_code == 200

    bodies = notification_bodies(engine, journey.purchase_id)

    # A redelivery and a partial refund change no status: no notification. A won dispute is
    # `purchase.completed` again (access continues), with previous_status `disputed`.
    assert [(b["type"], b["data"]["previous_status"]) for b in bodies] == [
        ("purchase.completed", "pending"),
        ("purchase.disputed", "completed"),
        ("purchase.completed", "disputed"),
        ("purchase.refunded", "completed"),
    ]
    assert bodies[-1]["data"]["purchase"] == api.get(f"/purchases/{journey.purchase_id}").json()
    assert [b["data"]["purchase"]["status"] for b in bodies] == ["completed", "disputed", "completed", "refunded"]
    assert len({b["id"] for b in bodies}) == 4 and all(uuid.UUID(b["id"]).version == 4 for b in bodies)
    assert all(datetime.fromisoformat(b["created_at"]).utcoffset().total_seconds() == 0 for b in bodies)
    assert set(bodies[0]) == {"id", "type", "created_at", "data"}


def test_a_lost_dispute_and_a_mismatched_payment_are_told(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    lost = Journey.checkout(api, standin, "user_lost")
    for kind in ("completed_paid", "dispute_created", "dispute_lost"):
        standin.deliver(lost.event(kind))
    odd = Journey.checkout(api, standin, "user_odd")
    standin.deliver(odd.event("completed_paid", amount_total=100))

    assert [b["type"] for b in notification_bodies(engine, lost.purchase_id)] == [
        "purchase.completed", "purchase.disputed", "purchase.dispute_lost",
    ]
    assert [b["type"] for b in notification_bodies(engine, odd.purchase_id)] == ["purchase.needs_review"]


def test_expiry_and_delayed_failure_are_told(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    expired = Journey.checkout(api, standin, "user_exp")
    standin.deliver(expired.event("expired"))
    delayed = Journey.checkout(api, standin, "user_delayed")
    standin.deliver(delayed.event("completed_unpaid"))
    standin.deliver(delayed.event("async_failed"))

    assert [b["type"] for b in notification_bodies(engine, expired.purchase_id)] == ["purchase.expired"]
    assert [(b["type"], b["data"]["previous_status"]) for b in notification_bodies(engine, delayed.purchase_id)] == [
        ("purchase.awaiting_payment", "pending"), ("purchase.failed", "awaiting_payment"),
    ]


def test_a_recovered_purchase_is_told_with_no_previous_status(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    standin.faults.create_delay_s = 2.5  # past paystore's Stripe timeout: checkout rolls back, Stripe kept it
    assert api.checkout().status_code == 502
    standin.faults.create_delay_s = 0
    [session] = standin.sessions.values()

    answer = standin.deliver(standin.event("checkout.session.completed", standin.settle(session["id"])))

    assert answer.json()["outcome"] == "recovered"
    [body] = notification_bodies(engine, session["metadata"]["purchase_id"])
    assert (body["type"], body["data"]["previous_status"]) == ("purchase.completed", None)
    assert body["data"]["purchase"] == api.get(f"/purchases/{session['metadata']['purchase_id']}").json()


def test_checkout_itself_tells_nothing(api: Api, engine: Engine) -> None:
    api.checkout()
    assert count(engine, "SELECT count(*) FROM notifications") == 0


def _pay(db: Session, purchase_id: uuid.UUID) -> purchases.Tracked:
    tracked = purchases.load(db, purchase_id)
    assert tracked is not None
    lifecycle.apply(tracked.purchase, lambda p: setattr(p, "payment", PaymentFact.PAID), cause="test")
    purchases.write(db, tracked)
    return tracked


def test_a_rolled_back_status_change_writes_no_notification(live_app: Flask, api: Api, engine: Engine) -> None:
    purchase_id = uuid.UUID(api.checkout().json()["purchase_id"])
    factory = Paystore.of(live_app).session_factory

    with factory() as db:
        transaction = db.begin()
        _pay(db, purchase_id)
        written_inside = db.scalar(select(func.count()).select_from(NotificationRow))
        transaction.rollback()

    assert written_inside == 1, "the change did not write its notification (the test could not fail)"
    assert count(engine, "SELECT count(*) FROM notifications") == 0
    assert purchase_row(engine, str(purchase_id))["status"] == "pending"


def test_the_notification_commits_with_its_change_and_a_second_write_adds_none(
    live_app: Flask, api: Api, engine: Engine
) -> None:
    purchase_id = uuid.UUID(api.checkout().json()["purchase_id"])
    factory = Paystore.of(live_app).session_factory

    with factory() as db, db.begin():
        tracked = purchases.load(db, purchase_id)
        lifecycle.apply(tracked.purchase, lambda p: setattr(p, "payment", PaymentFact.PAID), cause="test")
        tracked.purchase.completed_at = datetime(2026, 1, 2, tzinfo=UTC)
        purchases.write(db, tracked)
        purchases.write(db, tracked)  # nothing changed since: no second notification
        tracked.purchase.stripe_payment_intent_id = "pi_test_later"
        purchases.write(db, tracked)  # a change, but not of the status: no notification either

    [body] = notification_bodies(engine, str(purchase_id))
    assert body["type"] == "purchase.completed" and body["data"]["previous_status"] == "pending"
    assert body["data"]["purchase"]["completed_at"] == "2026-01-02T00:00:00+00:00"
    assert body["data"]["purchase"] == api.get(f"/purchases/{purchase_id}").json()
    assert purchase_row(engine, str(purchase_id))["stripe_payment_intent_id"] == "pi_test_later"


def test_an_orm_flush_of_a_purchase_is_refused(live_app: Flask, api: Api, engine: Engine) -> None:
    """Only the store writes purchases: a flush would change a status without its notification."""
    purchase_id = uuid.UUID(api.checkout().json()["purchase_id"])
    factory = Paystore.of(live_app).session_factory

    with factory() as db, pytest.raises(WriteBehindTheStore), db.begin():
        row = db.get_one(PurchaseRow, purchase_id)
        row.status = PurchaseStatus.COMPLETED
        db.flush()

    assert purchase_row(engine, str(purchase_id))["status"] == "pending"
    assert count(engine, "SELECT count(*) FROM notifications") == 0


def test_an_orm_flush_of_any_table_but_programs_is_refused(live_app: Flask, api: Api, engine: Engine) -> None:
    """The guard lists what may be flushed, so a table the store writes is guarded without being named."""
    purchase_id = uuid.UUID(api.checkout().json()["purchase_id"])
    factory = Paystore.of(live_app).session_factory

    with factory() as db, pytest.raises(WriteBehindTheStore), db.begin():
        db.add(RefundRow(id="re_behind_the_store", purchase_id=purchase_id, amount=100, status="succeeded"))
        db.flush()

    assert count(engine, "SELECT count(*) FROM refunds") == 0
