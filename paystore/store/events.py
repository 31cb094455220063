"""The stripe_events table: the durable record of Stripe events, one row per event id, written in
the transaction of the event's effect, so that a redelivery is a no-op."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from paystore.domain.outcome import Outcome
from paystore.inputs import storable_text
from paystore.models import StripeEventRow
from paystore.store import sql
from paystore.stripe.objects import Event

_INSERT_SQL = (
    "INSERT INTO stripe_events (stripe_event_id, type, livemode, payload, lock_key, lock_wait_ms)"
    " VALUES (%(e)s, %(t)s, %(l)s, %(p)s::jsonb, %(k)s, %(w)s) ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id"
)
_EARLIER_SQL = "SELECT id, outcome FROM stripe_events WHERE stripe_event_id = %(e)s FOR UPDATE"
_TAKE_OVER_SQL = (
    "UPDATE stripe_events SET attempts = attempts + 1, lock_key = %(k)s, lock_wait_ms = %(w)s, error = NULL"
    " WHERE id = %(id)s"
)
_HANDLED_SQL = "SELECT 1 FROM stripe_events WHERE stripe_event_id = %(e)s AND outcome IS DISTINCT FROM 'failed'"
_OUTCOME_SQL = "UPDATE stripe_events SET outcome = %(o)s, purchase_id = %(p)s, processed_at = clock_timestamp() WHERE id = %(id)s"


def record_arrival(db: Session, event: Event, lock_key: str | None, wait_ms: float | None) -> int | None:
    """Insert the event's record and return its id; None if this event id was already handled.

    A record left `failed` by an earlier attempt is taken over instead: this attempt may finish it.
    On the hot path the record is written, never read.
    """
    payload = event.payload_json if event.payload_json is not None else Jsonb(event.payload)
    params = {"e": event.id, "t": event.type, "l": event.livemode, "p": payload, "k": lock_key, "w": wait_ms}
    inserted = sql.scalar(db, _INSERT_SQL, params)
    if inserted is not None:
        return inserted
    earlier_id, earlier_outcome = sql.first(db, _EARLIER_SQL, {"e": event.id})
    if earlier_outcome != Outcome.FAILED:
        return None
    sql.execute(db, _TAKE_OVER_SQL, {"id": earlier_id, "k": lock_key, "w": wait_ms})
    return earlier_id


def handled(db: Session, stripe_event_id: str) -> bool:
    """The event was handled already: a redelivery would be a duplicate (a `failed` one is not)."""
    return sql.scalar(db, _HANDLED_SQL, {"e": stripe_event_id}) is not None


def record_outcome(db: Session, record_id: int, outcome: Outcome, purchase_id: uuid.UUID | None) -> None:
    """Finish the record in the transaction of the event's effect."""
    sql.execute(db, _OUTCOME_SQL, {"id": record_id, "o": str(outcome), "p": purchase_id})


def record_failure(db: Session, event: Event, error: str) -> None:
    """Record the event as failed with `error` (a transaction of the caller's own: the effect
    rolled back). Never overwrites the record of an event that was handled."""
    statement = insert(StripeEventRow).values(
        stripe_event_id=event.id, type=event.type, livemode=event.livemode, payload=event.payload,
        outcome=str(Outcome.FAILED), error=storable_text(error), processed_at=datetime.now(UTC),
    )
    statement = statement.on_conflict_do_update(
        index_elements=["stripe_event_id"],
        set_={"error": statement.excluded.error, "attempts": StripeEventRow.attempts + 1,
              "processed_at": statement.excluded.processed_at},
        where=StripeEventRow.outcome == str(Outcome.FAILED),
    )
    db.execute(statement)


def listed(
    db: Session, *, outcome: Outcome | None = None, since: datetime | None = None, limit: int = 200
) -> list[StripeEventRow]:
    """Newest first."""
    query = select(StripeEventRow).order_by(StripeEventRow.received_at.desc()).limit(limit)
    if outcome is not None:
        query = query.where(StripeEventRow.outcome == outcome)
    if since is not None:
        query = query.where(StripeEventRow.received_at >= since)
    return list(db.scalars(query))


def recorded_payload(db: Session, stripe_event_id: str) -> dict[str, Any] | None:
    """The event as it was recorded, or None."""
    return db.scalar(select(StripeEventRow.payload).where(StripeEventRow.stripe_event_id == stripe_event_id))
