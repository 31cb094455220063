"""The record of Stripe events: listing it, and running recorded events through the handler again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from paystore.config import Settings
from paystore.domain.outcome import Outcome
from paystore.models import StripeEventRow
from paystore.services.stripe_events.webhooks import WebhookResult, handle_event
from paystore.store import events
from paystore.stripe.gateway import StripeGateway
from paystore.stripe.objects import Event


def recorded_events(
    db: Session, *, outcome: Outcome | None = None, since: datetime | None = None, limit: int = 200
) -> list[StripeEventRow]:
    """Newest first."""
    with db.begin():
        return events.listed(db, outcome=outcome, since=since, limit=limit)


def replay(db: Session, gateway: StripeGateway, settings: Settings, stripe_event_id: str) -> WebhookResult:
    """Run a recorded event through the same handler again. Idempotent: a handled event is a
    duplicate and changes nothing; a `failed` one is finished."""
    with db.begin():
        payload = events.recorded_payload(db, stripe_event_id)
    if payload is None:
        raise LookupError(f"no recorded event {stripe_event_id}")
    return handle_event(db, gateway, settings, Event.from_dict(payload))
