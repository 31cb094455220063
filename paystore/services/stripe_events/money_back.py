"""Money going back to the buyer, applied to a purchase under its lock: refunds (reported by the
webhook, by `events sync`, or by Stripe's answer to a refund the shop asked for), disputes, and
the refund paystore may make on an early fraud warning."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from paystore.config import Settings
from paystore.domain import dispute as disputes
from paystore.domain import lifecycle
from paystore.domain.outcome import Outcome
from paystore.domain.purchase import GRANTING_STATUSES
from paystore.domain.refund import Refund, RefundStatus, apply_refunds
from paystore.services.stripe_events.errors import PurchaseNotYetKnown
from paystore.store import purchases, refunds
from paystore.stripe.gateway import StripeGateway
from paystore.stripe.objects import Charge, Dispute, EarlyFraudWarning, RefundReport

log = logging.getLogger(__name__)


def _fact(report: RefundReport, tracked: purchases.Tracked) -> Refund | None:
    try:
        status = RefundStatus(report.status)
    except ValueError:
        log.warning("Refund %s has a status paystore does not know (%s): not counted", report.id, report.status)
        return None
    return Refund(report.id, tracked.purchase.id, report.amount, status, report.failure_reason, report.reason)


def apply_refund_reports(
    db: Session, tracked: purchases.Tracked, reports: tuple[RefundReport, ...], reported_by_charge: int | None,
    *, cause: str, charge_id: str | None = None,
) -> Outcome:
    """Merge what Stripe says of the purchase's refunds, and write the refunds and the purchase
    (with the shop's notifications: `purchase.refund_failed`, then any status change)."""
    purchase = tracked.purchase
    if charge_id and not purchase.stripe_charge_id:
        purchase.stripe_charge_id = charge_id
    known = refunds.for_purchase(db, purchase.id)
    before = dict(known)
    seen = [fact for report in reports if (fact := _fact(report, tracked)) is not None]
    outcome, changed = apply_refunds(purchase, known, seen, reported_by_charge, cause=cause)
    refunds.write(db, purchase, changed, before)
    purchases.write(db, tracked)
    return outcome


def apply_charge(db: Session, tracked: purchases.Tracked, charge: Charge, *, cause: str) -> Outcome:
    """`charge.refunded`: the charge's own list of refunds, if it carries one, and its total."""
    return apply_refund_reports(db, tracked, charge.refunds, charge.amount_refunded, cause=cause, charge_id=charge.id)


def apply_dispute(db: Session, tracked: purchases.Tracked, dispute: Dispute, *, cause: str) -> Outcome:
    if dispute.charge_id and not tracked.purchase.stripe_charge_id:
        tracked.purchase.stripe_charge_id = dispute.charge_id
    outcome = lifecycle.apply(tracked.purchase, disputes.learn_from_dispute(dispute), cause=cause)
    purchases.write(db, tracked)
    return outcome


def refund_for_warning(
    db: Session, gateway: StripeGateway, settings: Settings, warning: EarlyFraudWarning
) -> RefundReport | None:
    """With PAYSTORE_REFUND_ON_EARLY_FRAUD_WARNING, refund what is left of the warned payment, before
    a dispute costs the shop its fee. Called outside any transaction (no lock held while Stripe
    answers). The idempotency key is the warning's: however often the event is delivered, Stripe
    makes one refund; once the purchase is refunded in full, no call is made at all."""
    if not settings.refund_on_early_fraud_warning or not warning.actionable:
        return None
    with db.begin():
        purchase_id = purchase_for(db, warning.payment_intent_id, warning.charge_id)
        purchase = purchases.get(db, purchase_id)
    if purchase is None or purchase.status not in GRANTING_STATUSES or not purchase.stripe_payment_intent_id:
        return None
    log.warning("Early fraud warning %s on purchase %s: refunding what is left", warning.id, purchase.id)
    return gateway.create_refund(
        purchase.stripe_payment_intent_id, None, "fraudulent",
        {"purchase_id": str(purchase.id), "early_fraud_warning": warning.id}, f"early_fraud_warning:{warning.id}",
    )


def purchase_for(db: Session, payment_intent_id: str | None, charge_id: str | None):  # noqa: ANN201
    """The purchase a charge, refund, dispute or warning is about; 503 until paystore knows it."""
    purchase_id = purchases.id_for_payment_intent(db, payment_intent_id) if payment_intent_id else None
    if purchase_id is None and charge_id:
        purchase_id = purchases.id_for_charge(db, charge_id)
    if purchase_id is None:
        # Completion (which records the payment intent) has not been applied yet.
        raise PurchaseNotYetKnown(f"no purchase for payment intent {payment_intent_id} (charge {charge_id})")
    return purchase_id
