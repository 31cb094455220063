"""Repair what a lost webhook left behind: ask Stripe about purchases still open past an age.

Safe while webhooks arrive and safe to run twice: Stripe is asked first, outside any
transaction, and what it said is then applied under the purchase's own lock with the same
rules as a webhook. Facts only move forward, so an answer that is a little old can never undo
a newer webhook.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from paystore import locks
from paystore.config import Settings
from paystore.models import Purchase, PurchaseStatus
from paystore.services import lifecycle
from paystore.stripe_gateway import StripeGateway, StripeUnavailable
from paystore.stripe_objects import CheckoutSession

log = logging.getLogger(__name__)

OPEN_STATUSES = (PurchaseStatus.PENDING, PurchaseStatus.AWAITING_PAYMENT)


@dataclass(frozen=True)
class ReconcileRow:
    purchase_id: uuid.UUID
    status_before: str
    stripe_says: str
    action: str
    status_after: str

    @property
    def repaired(self) -> bool:
        return self.status_after != self.status_before

    @property
    def failed(self) -> bool:
        return self.action.startswith("error")


def reconcile(
    db: Session, gateway: StripeGateway, settings: Settings, older_than: timedelta, *, dry_run: bool = False
) -> list[ReconcileRow]:
    cutoff = datetime.now(UTC) - older_than
    with db.begin():
        candidates = db.execute(
            select(Purchase.id, Purchase.status, Purchase.stripe_session_id)
            .where(Purchase.status.in_(OPEN_STATUSES), Purchase.created_at < cutoff)
            .order_by(Purchase.created_at)
        ).all()
    rows = []
    for purchase_id, status, session_id in candidates:
        row = _reconcile_one(db, gateway, settings, purchase_id, status, session_id, dry_run)
        if row.repaired and not dry_run:
            log.warning(
                "Reconcile repaired purchase %s: %s -> %s", purchase_id, row.status_before, row.status_after,
                extra={"purchase_id": str(purchase_id), "status_from": row.status_before, "status_to": row.status_after},
            )
        rows.append(row)
    return rows


def _reconcile_one(
    db: Session, gateway: StripeGateway, settings: Settings,
    purchase_id: uuid.UUID, status: str, session_id: str | None, dry_run: bool,
) -> ReconcileRow:
    if session_id is None:
        return ReconcileRow(purchase_id, status, "-", "error: no Stripe session", status)
    try:
        session = gateway.retrieve_checkout_session(session_id)
        stripe_says = f"{session.status}/{session.payment_status}"
        intent_status = None
        if session.status == "complete" and session.payment_status == "unpaid" and session.payment_intent_id:
            intent_status = gateway.payment_intent_status(session.payment_intent_id)
            stripe_says += f" ({intent_status})"
    except StripeUnavailable as exc:
        return ReconcileRow(purchase_id, status, "unknown", f"error: {exc}", status)
    event_type = lifecycle.snapshot_event_type(session, intent_status)
    try:
        return _apply(db, settings, purchase_id, session, event_type, stripe_says, dry_run)
    except locks.LockTimeout:
        return ReconcileRow(purchase_id, status, stripe_says, "error: purchase busy (lock timeout)", status)
    except OperationalError as exc:
        log.error("Reconcile of %s failed: %s", purchase_id, type(exc.orig or exc).__name__)
        return ReconcileRow(purchase_id, status, stripe_says, "error: database unavailable", status)


def _apply(
    db: Session, settings: Settings, purchase_id: uuid.UUID, session: CheckoutSession,
    event_type: str | None, stripe_says: str, dry_run: bool,
) -> ReconcileRow:
    transaction = db.begin()
    try:
        locks.take_xact_lock(db, locks.purchase_lock_key(purchase_id), settings.lock_timeout_ms)
        purchase = db.get_one(Purchase, purchase_id, populate_existing=True)
        before = str(purchase.status)
        if event_type is None:
            action = "left open"
        else:
            learn = lifecycle.learn_from_session(event_type, session, settings.stripe_livemode)
            outcome = lifecycle.apply(purchase, learn, cause="reconcile" + (" (dry run)" if dry_run else ""))
            action = "unchanged" if outcome in ("stale", "recorded") else f"repair: {outcome}"
        after = str(purchase.status)
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    except BaseException:
        transaction.rollback()
        raise
    return ReconcileRow(purchase_id, before, stripe_says, action, after)
