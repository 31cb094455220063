"""`paystore events sync`: Stripe's own list of events, run through the webhook handler.

Stripe retries a delivery for three days; an endpoint down, disabled or misconfigured for longer
(a wrong secret for a week) has lost those events for good, and reconcile only sees purchases
that exist here and are still open: not a paid session whose purchase row never committed, nor a
refund or dispute of a completed purchase. Stripe keeps 30 days of events and can list the ones
it did not deliver (`delivery_success=false`). Each listed event goes through the same handler as
a delivery: one already recorded is a duplicate and changes nothing, so a sync is safe at any
time, beside live webhooks, and twice at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from paystore.config import Settings
from paystore.services.stripe_events.errors import PurchaseNotYetKnown
from paystore.services.stripe_events.webhooks import HANDLED_EVENTS, handle_event
from paystore.stripe.gateway import StripeGateway
from paystore.stripe.objects import Event

log = logging.getLogger(__name__)

STRIPE_KEEPS_EVENTS = timedelta(days=30)


@dataclass(frozen=True)
class SyncRow:
    event_id: str
    type: str
    created: datetime
    outcome: str  # the handler's Outcome, or why it could not be applied
    error: Exception | None = None

    @property
    def applied(self) -> bool:
        return self.error is None


@dataclass
class SyncReport:
    rows: list[SyncRow] = field(default_factory=list)
    beyond_retention: bool = False  # the window asked for reaches past the 30 days Stripe keeps

    @property
    def failed(self) -> list[SyncRow]:
        return [row for row in self.rows if not row.applied]


def sync(db: Session, gateway: StripeGateway, settings: Settings, since: timedelta, *, undelivered_only: bool) -> SyncReport:
    """Apply the handled events of the window page by page, as Stripe lists them (newest first),
    then once more those whose purchase was not known yet, oldest first.

    Applying newest first is safe because the final state depends on which events arrived, never
    on their order; the events that need an earlier one (a refund or dispute of a payment whose
    completion comes later in this run) are the ones the handler refuses as not known yet, and
    they are kept for the second pass. So only one page, and those, are held in memory: thirty
    days of a busy shop's events need not fit."""
    report = SyncReport(beyond_retention=since > STRIPE_KEEPS_EVENTS)
    created_gte = int((datetime.now(UTC) - since).timestamp())
    waiting: list[dict] = []
    starting_after = None
    while True:
        page = gateway.list_events(HANDLED_EVENTS, created_gte, undelivered_only=undelivered_only,
                                   starting_after=starting_after)
        for payload in page.events:
            row = _apply(db, gateway, settings, payload)
            if isinstance(row.error, PurchaseNotYetKnown):
                waiting.append(payload)
            else:
                report.rows.append(row)
        if not page.has_more or not page.events:
            break
        starting_after = page.events[-1].get("id")
    report.rows += [_apply(db, gateway, settings, payload) for payload in reversed(waiting)]
    return report


def _apply(db: Session, gateway: StripeGateway, settings: Settings, payload: dict) -> SyncRow:
    created = datetime.fromtimestamp(payload.get("created") or 0, UTC)
    event_id, event_type = str(payload.get("id")), str(payload.get("type"))
    try:
        result = handle_event(db, gateway, settings, Event.from_dict(payload))
    except Exception as exc:  # one bad event must not stop the others; the table says which
        log.warning("events sync could not apply %s %s: %s", event_type, event_id, type(exc).__name__)
        return SyncRow(event_id, event_type, created, f"error: {type(exc).__name__}: {exc}"[:160], exc)
    return SyncRow(event_id, event_type, created, str(result.outcome))
