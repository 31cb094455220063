"""Purchase states as a function of what Stripe has told us, so that order never matters.

Stripe does not order its deliveries. Instead of moving a state machine one event at a time,
each event adds a *fact* to the purchase (the payment succeeded, £x was refunded, the dispute
was lost), every fact only ever moves forward, and the status is derived from all facts. Two
deliveries of the same set of events in any order therefore end in the same status, and an event
that tells us nothing new changes nothing (outcome `stale`). Callers hold the purchase's lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from paystore.domain.outcome import Outcome
from paystore.domain.purchase import ACTIVE_STATUSES, MAX_EMAIL_LENGTH, DisputeFact, PaymentFact, Purchase, PurchaseStatus
from paystore.stripe.objects import CheckoutSession

log = logging.getLogger(__name__)

SESSION_COMPLETED = "checkout.session.completed"
SESSION_ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
SESSION_ASYNC_FAILED = "checkout.session.async_payment_failed"
SESSION_EXPIRED = "checkout.session.expired"
SESSION_EVENTS = (SESSION_COMPLETED, SESSION_ASYNC_SUCCEEDED, SESSION_ASYNC_FAILED, SESSION_EXPIRED)


def derive_status(purchase: Purchase) -> PurchaseStatus:
    if purchase.review_reason:
        return PurchaseStatus.NEEDS_REVIEW
    if purchase.payment != PaymentFact.PAID:
        return {
            PaymentFact.NONE: PurchaseStatus.PENDING,
            PaymentFact.AWAITING: PurchaseStatus.AWAITING_PAYMENT,
            PaymentFact.FAILED: PurchaseStatus.FAILED,
            PaymentFact.EXPIRED: PurchaseStatus.EXPIRED,
        }[purchase.payment]
    if purchase.dispute == DisputeFact.LOST:
        return PurchaseStatus.DISPUTE_LOST
    if refunded_in_full(purchase):
        return PurchaseStatus.REFUNDED
    if purchase.dispute == DisputeFact.OPEN:
        return PurchaseStatus.DISPUTED
    return PurchaseStatus.COMPLETED


def charged(purchase: Purchase) -> tuple[int, str]:
    """What the buyer paid, in the currency of the charge and of its refunds: after a promotion
    code and with the tax; with Adaptive Pricing, in the buyer's own (presentment) currency, since
    Stripe charges and refunds the buyer in the currency they paid in, while `amount_total` is in
    the integration's currency."""
    if purchase.presentment_currency and purchase.presentment_amount is not None:
        return purchase.presentment_amount, purchase.presentment_currency
    total = purchase.amount_total if purchase.amount_total is not None else purchase.amount
    return total, purchase.currency


def refunded_in_full(purchase: Purchase) -> bool:
    """Everything the buyer paid is on its way back (a free course is never refunded)."""
    amount, _ = charged(purchase)
    return amount > 0 and purchase.refunded_amount >= amount


# Says why a purchase that was no longer active must not become active again (another purchase of
# the same user and program is active now), or None; the caller holds what makes the answer hold.
Clash = Callable[[Purchase], str | None]


@dataclass(frozen=True)
class _Facts:
    payment: PaymentFact
    refunded_amount: int
    dispute: DisputeFact | None
    review_reason: str | None
    payment_intent_id: str | None

    @classmethod
    def of(cls, p: Purchase) -> _Facts:
        return cls(p.payment, p.refunded_amount, p.dispute, p.review_reason, p.stripe_payment_intent_id)


def apply(purchase: Purchase, learn: Callable[[Purchase], None], *, cause: str, clash: Clash | None = None) -> Outcome:
    """Let `learn` add facts, re-derive the status, and name the outcome of the event.

    A refund that fails (`refunded`) or an appeal that wins (`dispute_lost`) would make an old
    purchase active again; if the user has bought the program again meanwhile, `clash` says so and
    the old purchase goes to review instead: two active purchases of one program cannot both
    stand (and the database refuses them), and only an operator can say which payment to refund.
    """
    before, status_before = _Facts.of(purchase), purchase.status
    learn(purchase)
    purchase.status = derive_status(purchase)
    if clash is not None and status_before not in ACTIVE_STATUSES and purchase.status in ACTIVE_STATUSES:
        reason = clash(purchase)
        if reason is not None:
            purchase.review_reason = reason
            purchase.status = derive_status(purchase)
    if purchase.payment == PaymentFact.PAID and not purchase.review_reason and purchase.completed_at is None:
        purchase.completed_at = datetime.now(UTC)
    if purchase.status == PurchaseStatus.NEEDS_REVIEW and status_before != PurchaseStatus.NEEDS_REVIEW:
        log.error(
            "Purchase %s needs review (nothing granted): %s (%s)", purchase.id, purchase.review_reason, cause,
            extra={"purchase_id": str(purchase.id), "status_to": str(purchase.status), "cause": cause},
        )
    if purchase.status != status_before:
        log.info(
            "Purchase %s: %s -> %s (%s)", purchase.id, status_before, purchase.status, cause,
            extra={"purchase_id": str(purchase.id), "status_from": status_before,
                   "status_to": str(purchase.status), "cause": cause},
        )
        return Outcome.moved_to(purchase.status)
    after = _Facts.of(purchase)
    if after.refunded_amount > before.refunded_amount:
        return Outcome.PARTIALLY_REFUNDED
    if after.refunded_amount < before.refunded_amount:
        return Outcome.REFUND_FAILED  # a refund stopped counting; the status did not move
    return Outcome.RECORDED if after != before else Outcome.STALE


def session_mismatch(purchase: Purchase, session: CheckoutSession, stripe_livemode: bool) -> str | None:
    """Why this session cannot complete this purchase, or None.

    The server decides the price: what was bought (the program, and the subtotal of its one line
    item) must be the program's price in the integration's currency, and what was charged must add
    up: total = subtotal - discount + tax when the price excludes tax (a tax-inclusive price has
    its tax inside the subtotal). A promotion code lowers the total, Stripe Tax raises it; neither
    changes what was bought.
    """
    problems = []
    program = session.metadata.get("program_id")
    if program is not None and program != purchase.program_id:
        problems.append(f"program {program} != {purchase.program_id}")
    if session.amount_subtotal != purchase.amount:
        problems.append(f"subtotal {session.amount_subtotal} != price {purchase.amount}")
    added_tax = session.amount_tax if purchase.tax_behavior == "exclusive" else 0
    if session.amount_subtotal is not None and (
        session.amount_total != session.amount_subtotal - session.amount_discount + added_tax
    ):
        problems.append(f"total {session.amount_total} != subtotal {session.amount_subtotal}"
                        f" - discount {session.amount_discount} + exclusive tax {added_tax}")
    if session.currency != purchase.currency:
        problems.append(f"currency {session.currency} != {purchase.currency}")
    if session.livemode != purchase.livemode or session.livemode != stripe_livemode:
        problems.append(f"livemode {session.livemode} != {purchase.livemode} (key live: {stripe_livemode})")
    if purchase.stripe_session_id and session.id != purchase.stripe_session_id:
        problems.append(f"session {session.id} != {purchase.stripe_session_id}")
    return "; ".join(problems) or None


def _record_charge(p: Purchase, session: CheckoutSession) -> None:
    """What the completed session charged, once the payment is on its way or in; the first
    completion's figures are the purchase's (every later event of the session carries the same)."""
    if p.amount_total is not None:
        return
    p.amount_total, p.amount_discount, p.amount_tax = session.amount_total, session.amount_discount, session.amount_tax
    p.discount = session.discount
    p.presentment_amount, p.presentment_currency = session.presentment_amount, session.presentment_currency
    if session.customer_id and not p.stripe_customer_id:
        p.stripe_customer_id = session.customer_id
    # Stripe allows a longer address than paystore keeps: the purchase then keeps none rather than
    # refuse a payment over its receipt address.
    if session.customer_email and not p.email and len(session.customer_email) <= MAX_EMAIL_LENGTH:
        p.email = session.customer_email


def learn_from_session(event_type: str, session: CheckoutSession, stripe_livemode: bool) -> Callable[[Purchase], None]:
    def learn(p: Purchase) -> None:
        if session.payment_intent_id and not p.stripe_payment_intent_id:
            p.stripe_payment_intent_id = session.payment_intent_id
        if event_type == SESSION_EXPIRED:
            if p.payment == PaymentFact.NONE:
                p.payment = PaymentFact.EXPIRED
            return
        if event_type != SESSION_ASYNC_FAILED:  # a failure grants nothing: no price to check
            mismatch = session_mismatch(p, session, stripe_livemode)
            if mismatch and not p.review_reason:
                p.review_reason = mismatch
        undecided = (PaymentFact.NONE, PaymentFact.AWAITING)
        paid = event_type == SESSION_ASYNC_SUCCEEDED or (
            event_type == SESSION_COMPLETED and session.payment_status in ("paid", "no_payment_required")
        )
        if paid and p.payment in undecided:
            p.payment = PaymentFact.PAID
        elif event_type == SESSION_ASYNC_FAILED and p.payment in undecided:
            p.payment = PaymentFact.FAILED
        elif event_type == SESSION_COMPLETED and p.payment == PaymentFact.NONE:
            p.payment = PaymentFact.AWAITING
        if p.payment in (PaymentFact.PAID, PaymentFact.AWAITING) and event_type != SESSION_ASYNC_FAILED:
            _record_charge(p, session)

    return learn


def snapshot_event_type(session: CheckoutSession, payment_intent_status: str | None = None) -> str | None:
    """The event a retrieved session amounts to (reconcile, lapsed checkout), or None if open.

    A session completed with a delayed method stays `complete`/`unpaid` whether the payment
    later fails or not; only its payment intent tells (`requires_payment_method` or `canceled`
    after a failure).
    """
    if session.status == "expired":
        return SESSION_EXPIRED
    if session.status != "complete":
        return None
    if session.payment_status == "unpaid" and payment_intent_status == "succeeded":
        return SESSION_ASYNC_SUCCEEDED
    if session.payment_status == "unpaid" and payment_intent_status in ("requires_payment_method", "canceled"):
        return SESSION_ASYNC_FAILED
    return SESSION_COMPLETED
