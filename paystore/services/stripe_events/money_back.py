"""Money going back to the buyer, applied to a purchase under its lock: refunds (reported by the
webhook, by `events sync`, or by Stripe's answer to a refund the shop asked for), disputes, and
the refund paystore may make on an early fraud warning."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import Session

from paystore.config import Settings
from paystore.domain import dispute as disputes
from paystore.domain import lifecycle
from paystore.domain.outcome import Outcome
from paystore.domain.purchase import Purchase, PurchaseStatus
from paystore.domain.refund import COUNTING, Refund, RefundStatus, apply_refunds, in_charge_currency
from paystore.services.stripe_events.errors import PurchaseNotYetKnown
from paystore.store import events, locks, purchases, refunds
from paystore.stripe.gateway import StripeGateway, StripeRefused
from paystore.stripe.money_objects import Charge, Dispute, EarlyFraudWarning, RefundReport
from paystore.stripe.objects import Event

log = logging.getLogger(__name__)

CHARGE_REFUNDED = "charge.refunded"
REFUND_EVENTS = ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")
EARLY_FRAUD_WARNING = "radar.early_fraud_warning.created"


def _fact(report: RefundReport, tracked: purchases.Tracked, amount: int) -> Refund | None:
    try:
        status = RefundStatus(report.status)
    except ValueError:
        log.warning("Refund %s has a status paystore does not know (%s): not counted", report.id, report.status)
        return None
    return Refund(report.id, tracked.purchase.id, amount, status, report.failure_reason, report.reason)


def _in_charge_currency(purchase: Purchase, report: RefundReport) -> tuple[int, str | None]:
    presentment = None
    if report.presentment_amount is not None and report.presentment_currency:
        presentment = (report.presentment_amount, report.presentment_currency)
    return in_charge_currency(purchase, report.id, report.amount, report.currency, presentment)


def clash_with_another_purchase(db: Session, settings: Settings) -> lifecycle.Clash:
    """What stops an old purchase from becoming active again beside a newer one (lifecycle.apply).

    The creation lock of the user and program is taken after the purchase's own lock, in the order
    recovery takes them: while it is held no checkout can commit another active purchase, so the
    answer holds until commit."""

    def clash(purchase: Purchase) -> str | None:
        key = locks.purchase_create_lock_key(purchase.user_id, purchase.program_id)
        locks.take_xact_lock(db, key, settings.lock_timeout_ms)
        other = purchases.active(db, purchase.user_id, purchase.program_id)
        if other is None or other.id == purchase.id:
            return None
        return (f"would be {purchase.status} again while purchase {other.id} is {other.status}: "
                f"the user paid twice for {purchase.program_id}; refund one of the two payments")

    return clash


def apply_refund_reports(
    db: Session, settings: Settings, tracked: purchases.Tracked, reports: tuple[RefundReport, ...],
    reported_by_charge: int | None, *, cause: str, charge_id: str | None = None,
) -> Outcome:
    """Merge what Stripe says of the purchase's refunds, and write the refunds and the purchase
    (with the shop's notifications: `purchase.refund_failed`, then any status change)."""
    purchase = tracked.purchase
    if charge_id and not purchase.stripe_charge_id:
        purchase.stripe_charge_id = charge_id
    known = refunds.for_purchase(db, purchase.id)
    before = dict(known)
    converted = [(report, *_in_charge_currency(purchase, report)) for report in reports]
    foreign = tuple(problem for _, _, problem in converted if problem)
    seen = [fact for report, amount, problem in converted
            if not problem and (fact := _fact(report, tracked, amount)) is not None]
    outcome, changed = apply_refunds(purchase, known, seen, reported_by_charge, cause=cause, foreign=foreign,
                                     clash=clash_with_another_purchase(db, settings))
    refunds.write(db, purchase, changed, before)
    purchases.write(db, tracked)
    record_shop_requests(db, purchase.id, [report for report, _, problem in converted if not problem])
    return outcome


def record_shop_requests(db: Session, purchase_id: uuid.UUID, reports: list[RefundReport]) -> None:
    """The shop's requests these refunds answer, from their metadata: a request whose own
    transaction ended before it recorded its refund (its wait for the purchase's lock timed out,
    or its worker died) is then found by the shop's retry, which answers the same refund instead
    of judging the request again against an amount it already took."""
    for report in reports:
        if report.shop_request is not None:
            refunds.add_request(db, purchase_id, *report.shop_request, report.id)


def apply_charge(
    db: Session, settings: Settings, tracked: purchases.Tracked, charge: Charge, listed: tuple[RefundReport, ...] | None,
    *, cause: str,
) -> Outcome:
    """`charge.refunded`: every refund of the charge, as listed from Stripe before the lock
    (`listed`) or carried complete by the event itself. Its total is only kept for operators."""
    reports = listed if listed is not None else charge.refunds
    return apply_refund_reports(db, settings, tracked, reports, charge.amount_refunded, cause=cause, charge_id=charge.id)


def ask_stripe_first(
    db: Session, gateway: StripeGateway, settings: Settings, event: Event
) -> tuple[RefundReport, ...] | None:
    """What Stripe must tell (or do) before the event can be applied: the charge's refunds for a
    `charge.refunded` without its complete list, or for a refund of a purchase reported refunded
    that knows none of its refunds one by one; the refund made on an early fraud warning.

    Asked before any lock is taken (no purchase waits on Stripe), and only for an event that will
    be applied: one of this mode that was not handled yet, so that a redelivery, a replay or a
    sync never makes a second refund. Stripe not answering raises StripeUnavailable: 5xx, nothing
    recorded, Stripe retries."""
    if event.type not in (CHARGE_REFUNDED, *REFUND_EVENTS, EARLY_FRAUD_WARNING) or event.livemode != settings.stripe_livemode:
        return None
    with db.begin():
        if events.handled(db, event.id):
            return None
    if event.type == CHARGE_REFUNDED:
        return list_refunds_if_needed(db, gateway, Charge.from_dict(event.object))
    if event.type in REFUND_EVENTS:
        return list_refunds_if_unexplained(db, gateway, RefundReport.from_dict(event.object))
    return refund_for_warning(db, gateway, settings, EarlyFraudWarning.from_dict(event.object), event.id)


def list_refunds_if_needed(db: Session, gateway: StripeGateway, charge: Charge) -> tuple[RefundReport, ...] | None:
    """The charge's refunds from Stripe, unless the event carries all of them (None). Called
    outside any transaction; a charge paystore does not know yet is answered 503 first."""
    if charge.refunds_complete:
        return None
    with db.begin():
        purchase_for(db, charge.payment_intent_id, charge.id)
    listed = gateway.list_refunds(charge.id)
    explained = sum(r.amount for r in listed if r.status in COUNTING)
    if explained < charge.amount_refunded:  # listed after the event: it can only know more
        log.warning("Charge %s reports %d refunded, its listed refunds %d", charge.id, charge.amount_refunded, explained)
    return listed


def knows_none_of_its_refunds(db: Session, purchase: Purchase) -> bool:
    """A purchase reported refunded that knows none of its refunds one by one (refunded before
    paystore kept them: migration 0005 carried the amount over). Whatever brings it a refund must
    bring the charge's others too, listed from Stripe, or that refund alone would stand for all."""
    return purchase.reported_refunded_amount > 0 and not refunds.for_purchase(db, purchase.id)


def list_refunds_if_unexplained(db: Session, gateway: StripeGateway, refund: RefundReport) -> tuple[RefundReport, ...] | None:
    """For a refund event: the charge's refunds from Stripe when its purchase knows none of them
    yet (knows_none_of_its_refunds), else None: once any refund is known, every later one arrives
    by its own events (or a `charge.refunded` lists them)."""
    if not refund.charge_id:
        return None
    with db.begin():
        purchase = purchases.get(db, purchase_for(db, refund.payment_intent_id, refund.charge_id))
        unknown = purchase is not None and knows_none_of_its_refunds(db, purchase)
    return gateway.list_refunds(refund.charge_id) if unknown else None


def apply_dispute(db: Session, settings: Settings, tracked: purchases.Tracked, dispute: Dispute, *, cause: str) -> Outcome:
    if dispute.charge_id and not tracked.purchase.stripe_charge_id:
        tracked.purchase.stripe_charge_id = dispute.charge_id
    outcome = lifecycle.apply(tracked.purchase, disputes.learn_from_dispute(dispute), cause=cause,
                              clash=clash_with_another_purchase(db, settings))
    purchases.write(db, tracked)
    return outcome


def refund_for_warning(
    db: Session, gateway: StripeGateway, settings: Settings, warning: EarlyFraudWarning, event_id: str
) -> tuple[RefundReport, ...] | None:
    """With PAYSTORE_REFUND_ON_EARLY_FRAUD_WARNING, refund what is left of the warned payment, before
    a dispute costs the shop its fee: the refund made, () if Stripe refused it, None if none was
    asked. Called outside any transaction, before the purchase's lock.

    The purchase's refund lock is held from the check that the warning was not handled yet to
    Stripe's answer: a later delivery, replay or sync finds it handled and asks nothing; one at
    the same time waits, then asks with the same idempotency key (the warning's) and gets the same
    refund. A shop refund of the purchase waits as well, so that the two never ask for more than
    is left."""
    if not settings.refund_on_early_fraud_warning or not warning.actionable:
        return None
    with db.begin():
        purchase_id = purchase_for(db, warning.payment_intent_id, warning.charge_id)
        locks.take_xact_lock(db, locks.refund_lock_key(purchase_id), settings.lock_timeout_ms)
        purchase = purchases.get(db, purchase_id)
        # A disputed charge cannot be refunded (Stripe refuses): the dispute decides instead.
        if (events.handled(db, event_id) or purchase is None or purchase.status != PurchaseStatus.COMPLETED
                or not purchase.stripe_payment_intent_id):
            return None
        log.warning("Early fraud warning %s on purchase %s: refunding what is left", warning.id, purchase.id)
        try:
            report = gateway.create_refund(
                purchase.stripe_payment_intent_id, None, "fraudulent",
                {"purchase_id": str(purchase.id), "early_fraud_warning": warning.id}, f"early_fraud_warning:{warning.id}",
            )
        except StripeRefused as exc:
            log.warning("Stripe refused the refund of purchase %s on warning %s (%s): %s; nothing refunded",
                        purchase.id, warning.id, exc.code, exc.message)
            return ()
        if knows_none_of_its_refunds(db, purchase) and report.charge_id:
            return (report, *gateway.list_refunds(report.charge_id))
    return (report,)


def purchase_for(db: Session, payment_intent_id: str | None, charge_id: str | None):  # noqa: ANN201
    """The purchase a charge, refund, dispute or warning is about; 503 until paystore knows it."""
    purchase_id = purchases.id_for_payment_intent(db, payment_intent_id) if payment_intent_id else None
    if purchase_id is None and charge_id:
        purchase_id = purchases.id_for_charge(db, charge_id)
    if purchase_id is None:
        # Completion (which records the payment intent) has not been applied yet.
        raise PurchaseNotYetKnown(f"no purchase for payment intent {payment_intent_id} (charge {charge_id})")
    return purchase_id
