"""POST /webhooks/stripe: apply one verified Stripe event exactly once, under the purchase lock."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from paystore import locks
from paystore.config import Settings
from paystore.models import Purchase, StripeEvent
from paystore.services import event_log, lifecycle, purchase_rows, recovery
from paystore.services.errors import PurchaseNotYetKnown
from paystore.stripe_objects import (
    Charge,
    CheckoutSession,
    Dispute,
    Event,
    InvalidStripeObject,
)

log = logging.getLogger(__name__)

REFUND_EVENTS = ("charge.refunded",)
DISPUTE_EVENTS = ("charge.dispute.created", "charge.dispute.closed")
WRONG_MODE = "wrong_mode"
PAYMENT_FAILED = "payment_failed"


@dataclass(frozen=True)
class WebhookResult:
    outcome: str
    purchase_id: uuid.UUID | None = None


@dataclass(frozen=True)
class _Target:
    """What an event is about (its parsed object), which purchase, and the lock that guards it."""

    obj: CheckoutSession | Charge | Dispute | None = None
    lock_key: str | None = None
    purchase_id: uuid.UUID | None = None

    @property
    def legacy(self) -> bool:
        """A session created before paystore: no metadata.purchase_id."""
        return isinstance(self.obj, CheckoutSession) and self.purchase_id is None


# Expected refusals: answered 4xx/5xx with nothing recorded (Stripe retries, or the input is bad).
_NOT_FAILURES = (locks.LockTimeout, PurchaseNotYetKnown, InvalidStripeObject, OperationalError, InterfaceError, PoolTimeout)


def handle_event(db: Session, settings: Settings, event: Event) -> WebhookResult:
    """Record the event and apply it in one transaction, or raise and change nothing.

    If the handling itself raises, the effect rolls back, and the event is then recorded as
    `failed` with the error in a transaction of its own, so that Stripe's retry or
    `paystore events replay` can finish it (a failed record is not a duplicate).
    """
    try:
        return _handle(db, settings, event)
    except _NOT_FAILURES:
        raise
    except Exception as exc:
        event_log.record_failure(db, event, exc)
        raise


def _handle(db: Session, settings: Settings, event: Event) -> WebhookResult:
    with db.begin():
        if event.livemode != settings.stripe_livemode:
            return _refuse_other_mode(db, settings, event)
        target = _target(db, event)
        wait_ms = None
        if target.lock_key is not None:
            wait_ms = locks.take_xact_lock(db, target.lock_key, settings.lock_timeout_ms)
            _log_lock(target, wait_ms)
        record_id = event_log.record_arrival(db, event, target.lock_key, wait_ms)
        if record_id is None:
            return WebhookResult("duplicate", target.purchase_id)
        outcome, purchase = _apply(db, settings, event, target)
        if outcome == event_log.FAILED:
            # The purchase's new status `failed` (the payment failed) must not read as a failed
            # handler: a `failed` record is taken over by a redelivery and replayed.
            outcome = PAYMENT_FAILED
        purchase_id = purchase.id if purchase is not None else target.purchase_id
        event_log.record_outcome(db, record_id, outcome, purchase_id)
    return WebhookResult(outcome, purchase_id)


def _refuse_other_mode(db: Session, settings: Settings, event: Event) -> WebhookResult:
    """An event of the other mode (a test event at a live key, or the reverse) must change
    nothing. It is recorded, so Stripe stops resending it and an operator can see it."""
    record_id = event_log.record_arrival(db, event, None, None)
    if record_id is None:
        return WebhookResult("duplicate")
    log.error("Event %s is livemode=%s but the key is livemode=%s: recorded, not applied",
              event.id, event.livemode, settings.stripe_livemode)
    event_log.record_outcome(db, record_id, WRONG_MODE, None)
    return WebhookResult(WRONG_MODE)


def _target(db: Session, event: Event) -> _Target:
    if event.type in lifecycle.SESSION_EVENTS:
        session = CheckoutSession.from_dict(event.object)
        raw_id = session.metadata.get("purchase_id")
        if raw_id is None:
            return _Target(session, locks.legacy_session_lock_key(session.id))
        try:
            purchase_id = uuid.UUID(raw_id)
        except ValueError:
            raise InvalidStripeObject("checkout.session.metadata.purchase_id is not a UUID") from None
        return _Target(session, locks.purchase_lock_key(purchase_id), purchase_id)
    if event.type in REFUND_EVENTS or event.type in DISPUTE_EVENTS:
        obj = Charge.from_dict(event.object) if event.type in REFUND_EVENTS else Dispute.from_dict(event.object)
        purchase_id = None
        if obj.payment_intent_id:
            purchase_id = db.scalar(select(Purchase.id).where(Purchase.stripe_payment_intent_id == obj.payment_intent_id))
        if purchase_id is None:
            # Completion (which records the payment intent) has not been applied yet.
            raise PurchaseNotYetKnown(f"no purchase for payment intent {obj.payment_intent_id}")
        return _Target(obj, locks.purchase_lock_key(purchase_id), purchase_id)
    return _Target()


def _log_lock(target: _Target, wait_ms: float) -> None:
    if target.legacy:
        log.info("Using legacy lock (no purchase_id): %s (waited %.1f ms)", target.lock_key, wait_ms)
    else:
        log.info("Using unified lock: %s (waited %.1f ms)", target.lock_key, wait_ms)


def _apply(db: Session, settings: Settings, event: Event, target: _Target) -> tuple[str, Purchase | None]:
    """Add the event's facts to its purchase and write the change (with its notification)."""
    obj = target.obj
    if isinstance(obj, CheckoutSession):
        locked = _load_for_session(db, settings, target, obj)
        if locked is None:
            return recovery.recover_purchase(db, settings, event.type, obj, target.purchase_id)
        learn = lifecycle.learn_from_session(event.type, obj, settings.stripe_livemode)
    elif isinstance(obj, Charge):
        locked = purchase_rows.load_one(db, target.purchase_id)
        learn = lifecycle.learn_from_refund(obj)
    elif isinstance(obj, Dispute):
        locked = purchase_rows.load_one(db, target.purchase_id)
        learn = lifecycle.learn_from_dispute(obj, closed=event.type == "charge.dispute.closed")
    else:
        return "ignored", None
    outcome = lifecycle.apply(locked.purchase, learn, cause=f"{event.type} {event.id}")
    purchase_rows.save(db, locked)
    return outcome, locked.purchase


def _load_for_session(
    db: Session, settings: Settings, target: _Target, session: CheckoutSession
) -> purchase_rows.LockedPurchase | None:
    if target.purchase_id is not None:
        return purchase_rows.load(db, target.purchase_id)
    purchase_id = db.scalar(select(Purchase.id).where(Purchase.stripe_session_id == session.id))
    if purchase_id is None:
        # A legacy checkout may not have committed yet: answer 5xx, record nothing, and let
        # Stripe's retry find it.
        raise PurchaseNotYetKnown(f"no purchase for legacy session {session.id}")
    # The legacy lock only serializes events of this session. Charge and dispute events,
    # reconcile and checkout write the same row under the purchase lock, so take it too
    # (always legacy first, then purchase: nothing takes them the other way round).
    locks.take_xact_lock(db, locks.purchase_lock_key(purchase_id), settings.lock_timeout_ms)
    return purchase_rows.load_one(db, purchase_id)


def replay(db: Session, settings: Settings, stripe_event_id: str) -> WebhookResult:
    """Run a recorded event through the same handler again. Idempotent: a handled event is a
    duplicate and changes nothing; a `failed` one is finished."""
    with db.begin():
        payload = db.scalar(select(StripeEvent.payload).where(StripeEvent.stripe_event_id == stripe_event_id))
    if payload is None:
        raise LookupError(f"no recorded event {stripe_event_id}")
    return handle_event(db, settings, Event.from_dict(payload))
