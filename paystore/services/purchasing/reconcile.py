"""Repair what a lost webhook left behind: ask Stripe about purchases still open past an age.

Safe while webhooks arrive and safe to run twice: each purchase is brought up to date the way
the buyer's return does it (fulfilment.py): Stripe is asked first, outside any transaction, and
its answer applied under the purchase's own lock with the webhook's rules.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from paystore.config import Settings
from paystore.domain.outcome import Outcome
from paystore.domain.purchase import Purchase
from paystore.services.purchasing import fulfilment
from paystore.services.purchasing.errors import SessionMismatch
from paystore.store import DATABASE_UNAVAILABLE, locks, purchases
from paystore.stripe.errors import StripeRateLimited, StripeUnavailable
from paystore.stripe.gateway import StripeGateway

log = logging.getLogger(__name__)

# A batch job: it waits for the budget of Stripe reads rather than skipping a purchase.
RECONCILE_WAITS_FOR_BUDGET_S = 30.0


@dataclass(frozen=True)
class ReconcileRow:
    purchase_id: uuid.UUID
    status_before: str
    stripe_says: str
    action: str
    status_after: str
    charged: str = "-"  # what the session charged, once it did (the purchase's amount_total etc.)

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
        candidates = [(p.id, str(p.status), p.stripe_session_id) for p in purchases.open_before(db, cutoff)]
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
        view = fulfilment.ask_stripe(gateway, session_id, wait_s=RECONCILE_WAITS_FOR_BUDGET_S)
    except (StripeUnavailable, StripeRateLimited) as exc:
        return ReconcileRow(purchase_id, status, "unknown", f"error: {exc}", status)
    try:
        applied = fulfilment.apply_view(
            db, settings, purchase_id, view, cause="reconcile" + (" (dry run)" if dry_run else ""), dry_run=dry_run
        )
    except locks.LockTimeout:
        return ReconcileRow(purchase_id, status, view.says, "error: purchase busy (lock timeout)", status)
    except SessionMismatch as exc:
        log.error("Reconcile of %s refused: %s", purchase_id, exc)
        return ReconcileRow(purchase_id, status, view.says, "error: session names another purchase", status)
    except DATABASE_UNAVAILABLE as exc:
        log.error("Reconcile of %s failed: %s", purchase_id, type(getattr(exc, "orig", None) or exc).__name__)
        return ReconcileRow(purchase_id, status, view.says, "error: database unavailable", status)
    if applied.outcome is None:
        action = "left open"
    elif applied.outcome in (Outcome.STALE, Outcome.RECORDED):
        action = "unchanged"
    else:
        action = f"repair: {applied.outcome}"
    return ReconcileRow(purchase_id, applied.status_before, view.says, action, applied.status_after,
                        charged(applied.purchase))


def charged(p: Purchase) -> str:
    """What the purchase was charged, e.g. "4410 eur (discount 490, tax 0; buyer paid 5102 chf)"."""
    if p.amount_total is None:
        return "-"
    text = f"{p.amount_total} {p.currency} (discount {p.amount_discount or 0}, tax {p.amount_tax or 0}"
    if p.discount:
        text += f", {p.discount}"
    if p.presentment_currency:
        text += f"; buyer paid {p.presentment_amount} {p.presentment_currency}"
    return text + ")"
