"""POST /webhooks/stripe: apply one verified Stripe event exactly once, under the purchase lock."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from paystore import metrics
from paystore.config import Settings
from paystore.domain import lifecycle
from paystore.domain.outcome import Outcome
from paystore.errors import Refusal
from paystore.services.stripe_events import money_back, recovery
from paystore.services.stripe_events.errors import IncompatibleApiVersion, PurchaseNotYetKnown
from paystore.services.stripe_events.money_back import CHARGE_REFUNDED, EARLY_FRAUD_WARNING, REFUND_EVENTS
from paystore.store import DATABASE_UNAVAILABLE, events, locks, purchases
from paystore.stripe import version
from paystore.stripe.errors import InvalidStripeObject
from paystore.stripe.gateway import StripeGateway
from paystore.stripe.money_objects import Charge, Dispute, EarlyFraudWarning, RefundReport
from paystore.stripe.objects import CheckoutSession, Event
from paystore.stripe.version import STRIPE_API_VERSION

log = logging.getLogger(__name__)

DISPUTE_EVENTS = ("charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
                  "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated")
# Every type the handler acts on: the webhook endpoint's events, and what `events sync` lists.
HANDLED_EVENTS = (*lifecycle.SESSION_EVENTS, CHARGE_REFUNDED, *REFUND_EVENTS, *DISPUTE_EVENTS, EARLY_FRAUD_WARNING)


@dataclass(frozen=True)
class WebhookResult:
    outcome: Outcome
    purchase_id: uuid.UUID | None = None


@dataclass(frozen=True)
class _Target:
    """What an event is about (its parsed object), which purchase, and the lock that guards it."""

    obj: CheckoutSession | Charge | Dispute | RefundReport | EarlyFraudWarning | None = None
    lock_key: str | None = None
    purchase_id: uuid.UUID | None = None

    @property
    def legacy(self) -> bool:
        """A session created before paystore: no metadata.purchase_id."""
        return isinstance(self.obj, CheckoutSession) and self.purchase_id is None


def handle_event(db: Session, gateway: StripeGateway, settings: Settings, event: Event) -> WebhookResult:
    """Record the event and apply it in one transaction, or raise and change nothing.

    A refusal (bad input, lock timeout, a purchase not known yet, the database away, Stripe not
    answering what paystore had to ask it first) changes nothing and records nothing: Stripe
    retries it. If the handling itself raises, the effect rolls back and the event is recorded
    `failed` with the error, in a transaction of its own, so that Stripe's retry or `paystore
    events replay` can finish it (a failed record is not a duplicate).
    """
    try:
        _check_api_version(event)
    except IncompatibleApiVersion as exc:
        _record_failure(db, event, exc)
        raise
    asked = money_back.ask_stripe_first(db, gateway, settings, event)
    try:
        return _handle(db, settings, event, asked)
    except (Refusal, *DATABASE_UNAVAILABLE):
        raise
    except Exception as exc:
        _record_failure(db, event, exc)
        raise


def _record_failure(db: Session, event: Event, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"[:2000]
    log.error("Handling of %s %s failed; recorded as failed for retry or replay: %s", event.type, event.id, error)
    try:
        with db.begin():
            events.record_failure(db, event, error)
    except Exception:
        log.exception("Could not record the failure of %s; Stripe will retry it", event.id)


def _check_api_version(event: Event) -> None:
    """Count and log an event of another API version; refuse it if that version changes the
    meaning of a field paystore reads (paystore.stripe.version)."""
    if event.api_version is None or event.api_version == STRIPE_API_VERSION:
        return
    metrics.webhook_api_version_mismatch.labels(event.api_version).inc()
    reason = version.incompatibility(event.api_version, event.type, event.object)
    if reason is not None:
        raise IncompatibleApiVersion(reason)
    log.warning("Event %s is rendered in API version %s, paystore speaks %s: the fields it reads mean the same; "
                "applied", event.id, event.api_version, STRIPE_API_VERSION)


def _handle(db: Session, settings: Settings, event: Event, asked: tuple[RefundReport, ...] | None) -> WebhookResult:
    with db.begin():
        if event.livemode != settings.stripe_livemode:
            return _refuse_other_mode(db, settings, event)
        target = _target(db, event)
        wait_ms = None
        if target.lock_key is not None:
            wait_ms = locks.take_xact_lock(db, target.lock_key, settings.lock_timeout_ms)
            _log_lock(target, wait_ms)
        record_id = events.record_arrival(db, event, target.lock_key, wait_ms)
        if record_id is None:
            return WebhookResult(Outcome.DUPLICATE, target.purchase_id)
        outcome, purchase_id = _apply(db, settings, event, target, asked)
        purchase_id = purchase_id or target.purchase_id
        events.record_outcome(db, record_id, outcome, purchase_id)
    return WebhookResult(outcome, purchase_id)


def _refuse_other_mode(db: Session, settings: Settings, event: Event) -> WebhookResult:
    """An event of the other mode (a test event at a live key, or the reverse) must change
    nothing. It is recorded, so Stripe stops resending it and an operator can see it."""
    record_id = events.record_arrival(db, event, None, None)
    if record_id is None:
        return WebhookResult(Outcome.DUPLICATE)
    log.error("Event %s is livemode=%s but the key is livemode=%s: recorded, not applied",
              event.id, event.livemode, settings.stripe_livemode)
    events.record_outcome(db, record_id, Outcome.WRONG_MODE, None)
    return WebhookResult(Outcome.WRONG_MODE)


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
    parse = _MONEY_BACK.get(event.type)
    if parse is None:
        return _Target()
    obj = parse(event.object)
    charge_id = obj.id if isinstance(obj, Charge) else obj.charge_id
    purchase_id = money_back.purchase_for(db, obj.payment_intent_id, charge_id)
    return _Target(obj, locks.purchase_lock_key(purchase_id), purchase_id)


_MONEY_BACK: dict[str, Callable[[dict[str, Any]], Charge | RefundReport | Dispute | EarlyFraudWarning]] = {
    CHARGE_REFUNDED: Charge.from_dict,
    **dict.fromkeys(REFUND_EVENTS, RefundReport.from_dict),
    **dict.fromkeys(DISPUTE_EVENTS, Dispute.from_dict),
    EARLY_FRAUD_WARNING: EarlyFraudWarning.from_dict,
}


def _log_lock(target: _Target, wait_ms: float) -> None:
    if target.legacy:
        log.info("Using legacy lock (no purchase_id): %s (waited %.1f ms)", target.lock_key, wait_ms)
    else:
        log.info("Using unified lock: %s (waited %.1f ms)", target.lock_key, wait_ms)


def _apply(
    db: Session, settings: Settings, event: Event, target: _Target, asked: tuple[RefundReport, ...] | None
) -> tuple[Outcome, uuid.UUID | None]:
    """Add the event's facts to its purchase and write the change (with its notifications)."""
    obj, cause = target.obj, f"{event.type} {event.id}"
    if obj is None:
        return Outcome.IGNORED, None
    if isinstance(obj, CheckoutSession):
        tracked = _load_for_session(db, settings, target, obj)
        if tracked is None:
            return recovery.recover_purchase(db, settings, event.type, obj, target.purchase_id)
        learn = lifecycle.learn_from_session(event.type, obj, settings.stripe_livemode)
        outcome = lifecycle.apply(tracked.purchase, learn, cause=cause)
        purchases.write(db, tracked)
        return outcome, tracked.purchase.id
    tracked = purchases.load(db, target.purchase_id)
    if tracked is None:
        raise PurchaseNotYetKnown(f"purchase {target.purchase_id} is not in the database")
    if isinstance(obj, Charge):
        outcome = money_back.apply_charge(db, settings, tracked, obj, asked, cause=cause)
    elif isinstance(obj, RefundReport):
        # the refund as this event tells it, and the charge's others if they had to be listed
        outcome = money_back.apply_refund_reports(db, settings, tracked, (obj, *(asked or ())), None, cause=cause,
                                                  charge_id=obj.charge_id)
    elif isinstance(obj, Dispute):
        outcome = money_back.apply_dispute(db, settings, tracked, obj, cause=cause)
    elif asked:  # an early fraud warning paystore refunded
        outcome = money_back.apply_refund_reports(db, settings, tracked, asked, None, cause=cause)
    else:
        outcome = Outcome.IGNORED
    return outcome, tracked.purchase.id


def _load_for_session(
    db: Session, settings: Settings, target: _Target, session: CheckoutSession
) -> purchases.Tracked | None:
    if target.purchase_id is not None:
        return purchases.load(db, target.purchase_id)
    purchase_id = purchases.id_for_session(db, session.id)
    if purchase_id is None:
        # A legacy checkout may not have committed yet: answer 5xx, record nothing, and let
        # Stripe's retry find it.
        raise PurchaseNotYetKnown(f"no purchase for legacy session {session.id}")
    # The legacy lock only serializes events of this session. Charge and dispute events,
    # reconcile and checkout write the same row under the purchase lock, so take it too
    # (always legacy first, then purchase: nothing takes them the other way round).
    locks.take_xact_lock(db, locks.purchase_lock_key(purchase_id), settings.lock_timeout_ms)
    return purchases.load(db, purchase_id)
