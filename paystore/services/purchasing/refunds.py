"""Refunds the shop starts (POST /purchases/<id>/refunds, `paystore refunds create`).

One request of a purchase at a time: the purchase's refund lock (locks.refund_lock_key) is
held from the check of what is left to refund, across Stripe's answer, to the commit of the
refund, so that two requests with different Idempotency-Keys cannot together ask Stripe for more
than is left. The purchase's own lock is taken only to apply the answer: webhooks of the purchase
do not wait while Stripe answers.

Stripe is asked with an idempotency key made of the purchase and the shop's `Idempotency-Key`: a
repeat makes no second refund at Stripe. The answer is applied at once under the purchase's lock,
as a webhook would apply it: refunds are facts that only move forward, so applying Stripe's answer
before its `refund.created` arrives cannot disagree with the event (which is then `stale`), and
the shop sees the purchase as Stripe already has it. The request is recorded in that transaction;
a repeat with the same key answers the same refund without asking Stripe again. Stripe refusing
the refund (the charge is disputed, refunded already) is a 409 that records nothing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from paystore.config import Settings
from paystore.domain import lifecycle
from paystore.domain.purchase import GRANTING_STATUSES, Purchase
from paystore.domain.refund import Refund, RefundStatus
from paystore.services.purchasing.errors import (
    IdempotencyKeyReused,
    NotRefundable,
    PartialRefundInAnotherCurrency,
    PurchaseNotFound,
    RefundRefused,
    RefundTooLarge,
)
from paystore.services.stripe_events import money_back
from paystore.store import locks, purchases, refunds
from paystore.stripe.gateway import StripeGateway, StripeRefused
from paystore.stripe.money_objects import SHOP_REQUEST_FINGERPRINT, SHOP_REQUEST_KEY, RefundReport

REASONS = ("duplicate", "fraudulent", "requested_by_customer")


@dataclass(frozen=True)
class RefundAnswer:
    refund: Refund
    purchase: Purchase


def _fingerprint(amount: int | None, reason: str | None) -> str:
    return hashlib.sha256(json.dumps({"amount": amount, "reason": reason}).encode()).hexdigest()


def stripe_idempotency_key(purchase_id: uuid.UUID, shop_key: str) -> str:
    """The key Stripe gets for the shop's refund request: the purchase and the shop's key, the
    latter hashed when the whole would pass the 255 characters Stripe accepts."""
    key = f"refund:{purchase_id}:{shop_key}"
    return key if len(key) <= 255 else f"refund:{purchase_id}:sha256:{hashlib.sha256(shop_key.encode()).hexdigest()}"


def left_to_refund(purchase: Purchase) -> int:
    """What is left of the payment, in the charge's currency (the buyer's, with Adaptive Pricing)."""
    charged, _ = lifecycle.charged(purchase)
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
        # The lock first (a key of no purchase locks nothing anyone waits for), then one read.
        locks.take_xact_lock(db, locks.refund_lock_key(key), settings.lock_timeout_ms)
        purchase = purchases.get(db, key)
        if purchase is None:
            raise PurchaseNotFound(purchase_id)
        earlier = refunds.request(db, key, idempotency_key)
        if earlier is not None:
            if earlier[0] != fingerprint:
                raise IdempotencyKeyReused("this Idempotency-Key was used for another refund of this purchase")
            known = refunds.for_purchase(db, key).get(earlier[1])
            # Answered with a status paystore does not know yet: not a fact, shown as pending.
            return RefundAnswer(known or Refund(earlier[1], key, amount or 0, RefundStatus.PENDING, None, reason), purchase)
        _check_refundable(purchase, amount)
        try:
            report = gateway.create_refund(
                purchase.stripe_payment_intent_id, amount, reason,
                {"purchase_id": str(purchase.id), SHOP_REQUEST_KEY: idempotency_key, SHOP_REQUEST_FINGERPRINT: fingerprint},
                stripe_idempotency_key(purchase.id, idempotency_key),
            )
        except StripeRefused as exc:
            raise RefundRefused(f"Stripe refused the refund: {exc.message}") from None
        reports: tuple[RefundReport, ...] = (report,)
        if money_back.knows_none_of_its_refunds(db, purchase) and report.charge_id:
            reports += tuple(gateway.list_refunds(report.charge_id))
        return _apply(db, settings, purchase, reports, idempotency_key, fingerprint)


def _check_refundable(purchase: Purchase, amount: int | None) -> None:
    if purchase.status not in GRANTING_STATUSES or not purchase.stripe_payment_intent_id:
        raise NotRefundable(f"purchase {purchase.id} is {purchase.status}: only a paid purchase can be refunded")
    left = left_to_refund(purchase)
    if left == 0:
        raise NotRefundable(f"purchase {purchase.id} is refunded in full already")
    _, paid_in = lifecycle.charged(purchase)
    if amount is not None and paid_in.lower() != purchase.currency.lower():
        raise PartialRefundInAnotherCurrency(
            f"purchase {purchase.id} was paid in {paid_in} for a price in {purchase.currency}"
            " (Adaptive Pricing): refund it in full (no amount), or in part from the Stripe Dashboard"
        )
    if amount is not None and amount > left:
        raise RefundTooLarge(f"amount {amount} is more than the {left} left to refund")


def _apply(db: Session, settings: Settings, purchase: Purchase, reports: tuple[RefundReport, ...], idempotency_key: str,
           fingerprint: str) -> RefundAnswer:
    """Stripe's answer (`reports[0]`, with the charge's other refunds if they had to be listed),
    applied under the purchase's lock as a webhook would."""
    report = reports[0]
    locks.take_xact_lock(db, locks.purchase_lock_key(purchase.id), settings.lock_timeout_ms)
    tracked = purchases.load(db, purchase.id)
    assert tracked is not None
    money_back.apply_refund_reports(db, settings, tracked, reports, None, cause=f"refund {report.id} asked by the shop",
                                    charge_id=report.charge_id)
    refunds.add_request(db, purchase.id, idempotency_key, fingerprint, report.id)
    made = refunds.for_purchase(db, purchase.id).get(report.id)
    if made is None:  # a status paystore does not know yet: not recorded as a fact, shown as Stripe said
        made = Refund(report.id, purchase.id, report.amount, RefundStatus.PENDING, report.failure_reason, report.reason)
    return RefundAnswer(made, tracked.purchase)
