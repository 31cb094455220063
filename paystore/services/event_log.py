"""The durable record of Stripe events: one row per event id, written with the event's effect."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from paystore.inputs import storable_text
from paystore.models import StripeEvent
from paystore.stripe_objects import Event

log = logging.getLogger(__name__)

FAILED = "failed"
_EVENTS = StripeEvent.__table__


def record_arrival(db: Session, event: Event, lock_key: str | None, wait_ms: float | None) -> int | None:
    """Insert the event's record and return its id; None if this event id was already handled.

    A record left `failed` by an earlier attempt is taken over instead: this attempt may finish it.
    Core statements, not ORM objects: the record is written, never read back, on the hot path.
    """
    inserted = db.scalar(
        insert(_EVENTS)
        .values(
            stripe_event_id=event.id,
            type=event.type,
            livemode=event.livemode,
            payload=event.payload,
            lock_key=lock_key,
            lock_wait_ms=wait_ms,
        )
        .on_conflict_do_nothing(index_elements=["stripe_event_id"])
        .returning(_EVENTS.c.id)
    )
    if inserted is not None:
        return inserted
    earlier = db.execute(
        select(_EVENTS.c.id, _EVENTS.c.outcome).where(_EVENTS.c.stripe_event_id == event.id).with_for_update()
    ).one()
    if earlier.outcome != FAILED:
        return None
    db.execute(
        update(_EVENTS)
        .where(_EVENTS.c.id == earlier.id)
        .values(attempts=_EVENTS.c.attempts + 1, lock_key=lock_key, lock_wait_ms=wait_ms, error=None)
    )
    return earlier.id


def record_outcome(db: Session, record_id: int, outcome: str, purchase_id: uuid.UUID | None) -> None:
    """Finish the record in the transaction of the event's effect."""
    db.execute(
        update(_EVENTS)
        .where(_EVENTS.c.id == record_id)
        .values(outcome=outcome, purchase_id=purchase_id, processed_at=datetime.now(UTC))
    )


def record_failure(db: Session, event: Event, exc: Exception) -> None:
    # The message may quote the event's own strings: keep it storable, or the record fails too.
    error = storable_text(f"{type(exc).__name__}: {exc}"[:2000])
    log.error("Handling of %s %s failed; recorded as failed for retry or replay: %s", event.type, event.id, error)
    statement = insert(StripeEvent).values(
        stripe_event_id=event.id, type=event.type, livemode=event.livemode, payload=event.payload,
        outcome=FAILED, error=error, processed_at=datetime.now(UTC),
    )
    statement = statement.on_conflict_do_update(
        index_elements=["stripe_event_id"],
        set_={"error": error, "attempts": StripeEvent.attempts + 1, "processed_at": statement.excluded.processed_at},
        where=StripeEvent.outcome == FAILED,  # never overwrite an event that was handled
    )
    try:
        with db.begin():
            db.execute(statement)
    except Exception:
        log.exception("Could not record the failure of %s; Stripe will retry it", event.id)


def recorded_events(
    db: Session, *, outcome: str | None = None, since: datetime | None = None, limit: int = 200
) -> list[StripeEvent]:
    query = select(StripeEvent).order_by(StripeEvent.received_at.desc()).limit(limit)
    if outcome is not None:
        query = query.where(StripeEvent.outcome == outcome)
    if since is not None:
        query = query.where(StripeEvent.received_at >= since)
    with db.begin():
        return list(db.scalars(query))
