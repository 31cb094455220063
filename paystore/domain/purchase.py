"""A purchase as paystore's rules see it: its statuses, the facts Stripe has told, and its JSON.

A plain dataclass, not an ORM object: the store (paystore.store.purchases) reads it from a row
and writes back what changed, so no Session ever holds a second copy that could disagree.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

# The longest email address paystore keeps (RFC 5321's path limit; the column's size).
MAX_EMAIL_LENGTH = 254


class PurchaseStatus(StrEnum):
    PENDING = "pending"
    AWAITING_PAYMENT = "awaiting_payment"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    DISPUTE_LOST = "dispute_lost"
    NEEDS_REVIEW = "needs_review"


# A user may hold at most one purchase in these states per program (a partial unique index).
ACTIVE_STATUSES = (
    PurchaseStatus.PENDING,
    PurchaseStatus.AWAITING_PAYMENT,
    PurchaseStatus.COMPLETED,
    PurchaseStatus.DISPUTED,
)
# Not paid yet: only these can still be moved on by what a Checkout Session says (refunds and
# disputes are facts of the charge), so only these are worth asking Stripe about.
OPEN_STATUSES = (PurchaseStatus.PENDING, PurchaseStatus.AWAITING_PAYMENT)
# What opens the program: a disputed payment keeps access until the dispute is lost.
GRANTING_STATUSES = (PurchaseStatus.COMPLETED, PurchaseStatus.DISPUTED)


class PaymentFact(StrEnum):
    """What Stripe has told us about the money, independent of refunds and disputes."""

    NONE = "none"
    AWAITING = "awaiting"
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"


class DisputeFact(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


@dataclass(slots=True, eq=False)
class Purchase:
    """One purchase; the field order is the store's column order."""

    id: uuid.UUID
    user_id: str
    program_id: str
    status: PurchaseStatus
    amount: int
    currency: str
    livemode: bool
    stripe_session_id: str | None = None
    checkout_url: str | None = None
    session_expires_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    # Facts from Stripe; `status` is derived from them (paystore.domain.lifecycle).
    payment: PaymentFact = PaymentFact.NONE
    stripe_payment_intent_id: str | None = None
    refunded_amount: int = 0
    dispute_id: str | None = None
    dispute: DisputeFact | None = None
    review_reason: str | None = None
    # Who pays: the email checkout was given, and the user's Stripe Customer.
    email: str | None = None
    stripe_customer_id: str | None = None
    # How the total is made up: "exclusive" (tax added to `amount`), "inclusive", or None (no
    # automatic tax), fixed at checkout so that the completion check does not follow later edits.
    tax_behavior: str | None = None
    # What was charged, from the completed session: the total after discount and tax, the
    # discount (and its promotion code or coupon), the tax, and with Adaptive Pricing what the
    # buyer saw in their own currency.
    amount_total: int | None = None
    amount_discount: int | None = None
    amount_tax: int | None = None
    discount: str | None = None
    presentment_amount: int | None = None
    presentment_currency: str | None = None
    # The charge paystore's refunds and disputes refer to, and the largest `amount_refunded` its
    # events reported (what counts when no refund is known one by one: paystore.domain.refund).
    stripe_charge_id: str | None = None
    reported_refunded_amount: int = 0

    @classmethod
    def pending(
        cls, *, id: uuid.UUID, user_id: str, program_id: str, amount: int, currency: str, livemode: bool,
        stripe_session_id: str | None = None, email: str | None = None, stripe_customer_id: str | None = None,
        tax_behavior: str | None = None,
    ) -> Purchase:
        """A purchase before Stripe has said anything about it."""
        return cls(id=id, user_id=user_id, program_id=program_id, status=PurchaseStatus.PENDING, amount=amount,
                   currency=currency, livemode=livemode, stripe_session_id=stripe_session_id, email=email,
                   stripe_customer_id=stripe_customer_id, tax_behavior=tax_behavior)


def purchase_json(p: Purchase) -> dict[str, Any]:
    """The purchase as the outside world sees it: the API's answers and the shop's notifications
    both use this, so a notification's `data.purchase` is what `GET /purchases/<id>` answers."""
    return {
        "purchase_id": str(p.id),
        "user_id": p.user_id,
        "program_id": p.program_id,
        "status": str(p.status),
        "amount": p.amount,
        "currency": p.currency,
        "refunded_amount": p.refunded_amount,
        "amount_total": p.amount_total,
        "amount_discount": p.amount_discount,
        "amount_tax": p.amount_tax,
        "discount": p.discount,
        "presentment_amount": p.presentment_amount,
        "presentment_currency": p.presentment_currency,
        "email": p.email,
        "stripe_session_id": p.stripe_session_id,
        # Only a pending purchase has a session the buyer can still pay.
        "checkout_url": p.checkout_url if p.status == PurchaseStatus.PENDING else None,
        "created_at": p.created_at.isoformat() if p.created_at else None,
        "completed_at": p.completed_at.isoformat() if p.completed_at else None,
    }
