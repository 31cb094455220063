"""Refunds the shop starts (POST /purchases/<id>/refunds, `paystore refunds create`).

Stripe is asked first, outside any transaction (no lock is held while it answers), with an
idempotency key made of the purchase and the shop's `Idempotency-Key`: a repeat makes no second
refund at Stripe. The answer is then applied at once under the purchase's lock, as a webhook
would apply it: refunds are facts that only move forward, so applying Stripe's answer before its
`refund.created` arrives cannot disagree with the event (which is then `stale`), and the shop
sees the purchase as Stripe already has it. The request is recorded in that transaction; a repeat
with the same key answers the same refund without asking Stripe again.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from paystore.config import Settings
from paystore.domain.purchase import GRANTING_STATUSES, Purchase
from paystore.domain.refund import Refund, RefundStatus
from paystore.services.purchasing.errors import IdempotencyKeyReused, NotRefundable, PurchaseNotFound, RefundTooLarge
from paystore.services.stripe_events import money_back
from paystore.store import locks, purchases, refunds
from paystore.stripe.gateway import StripeGateway

REASONS = ("duplicate", "fraudulent", "requested_by_customer")


@dataclass(frozen=True)
class RefundAnswer:
    refund: Refund
    purchase: Purchase


def _fingerprint(amount: int | None, reason: str | None) -> str:
    return hashlib.sha256(json.dumps({"amount": amount, "reason": reason}).encode()).hexdigest()


def left_to_refund(purchase: Purchase) -> int:
    charged = purchase.amount_total if purchase.amount_total is not None else purchase.amount
    return max(0, charged - purchase.refunded_amount)


def refund(
    db: Session, gateway: StripeGateway, settings: Settings, purchase_id: str, amount: int | None, reason: str | None,
    idempotency_key: str,
) -> RefundAnswer:
    try:
        key = uuid.UUID(purchase_id)
    except ValueError:
        raise PurchaseNotFound(purchase_id) from None
    fingerprint = _fingerprint(amount, reason)
    with db.begin():
        purchase = purchases.get(db, key)
        earlier = refunds.request(db, key, idempotency_key) if purchase is not None else None
        known = refunds.for_purchase(db, key) if earlier is not None else {}
    if purchase is None:
        raise PurchaseNotFound(purchase_id)
    if earlier is not None:
        if earlier[0] != fingerprint:
            raise IdempotencyKeyReused("this Idempotency-Key was used for another refund of this purchase")
        return RefundAnswer(known[earlier[1]], purchase)
    if purchase.status not in GRANTING_STATUSES or not purchase.stripe_payment_intent_id:
        raise NotRefundable(f"purchase {purchase.id} is {purchase.status}: only a paid purchase can be refunded")
    left = left_to_refund(purchase)
    if left == 0:
        raise NotRefundable(f"purchase {purchase.id} is refunded in full already")
    if amount is not None and amount > left:
        raise RefundTooLarge(f"amount {amount} is more than the {left} left to refund")
    report = gateway.create_refund(
        purchase.stripe_payment_intent_id, amount, reason, {"purchase_id": str(purchase.id)},
        f"refund:{purchase.id}:{idempotency_key}",
    )
    with db.begin():
        locks.take_xact_lock(db, locks.purchase_lock_key(purchase.id), settings.lock_timeout_ms)
        tracked = purchases.load(db, purchase.id)
        money_back.apply_refund_reports(db, tracked, (report,), None, cause=f"refund {report.id} asked by the shop",
                                        charge_id=report.charge_id)
        refunds.add_request(db, purchase.id, idempotency_key, fingerprint, report.id)
        made = refunds.for_purchase(db, purchase.id).get(report.id)
    if made is None:  # a status paystore does not know yet: not recorded as a fact, shown as Stripe said
        made = Refund(report.id, purchase.id, report.amount, RefundStatus.PENDING, report.failure_reason, report.reason)
    return RefundAnswer(made, tracked.purchase)
