"""POST /checkout: one purchase per request, created under the lock its webhook will take."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paystore.config import Settings
from paystore.domain import lifecycle
from paystore.domain.program import Program
from paystore.domain.purchase import ACTIVE_STATUSES, Purchase, PurchaseStatus
from paystore.services.purchasing import customers
from paystore.services.purchasing.errors import AlreadyPurchased, CheckoutConflict, PaymentInProgress, ProgramNotFound
from paystore.store import customers as customer_records
from paystore.store import locks, programs, purchases
from paystore.stripe.calls import CheckoutRequest
from paystore.stripe.gateway import StripeGateway

log = logging.getLogger(__name__)

ACTIVE_PURCHASE_INDEX = "uq_purchases_one_active_per_user_program"
# A checkout that must settle a lapsed session waits this long for the Stripe read budget.
LAPSED_WAITS_FOR_BUDGET_S = 2.0


@dataclass(frozen=True)
class CheckoutResult:
    purchase: Purchase
    created: bool


class _FirstCheckoutOfUser(Exception):
    """The user has no Stripe Customer yet: it is made first, in a transaction of its own."""


def start_checkout(
    db: Session, gateway: StripeGateway, settings: Settings, user_id: str, program_id: str, email: str | None = None
) -> CheckoutResult:
    """Create the purchase and its Stripe session in one transaction, or return the open one.

    Lock order is always creation lock, then purchase lock. A webhook takes a purchase lock
    first, and the creation lock after it only to recreate a purchase whose row does not exist,
    which no checkout can be holding: no cycle, no deadlock. A Stripe failure raises and rolls
    everything back: no purchase row is left behind. A user's first checkout finds no Stripe
    Customer before it has written anything; it makes one (customers.py) and starts again.
    """
    try:
        return _start(db, gateway, settings, user_id, program_id, email, None)
    except _FirstCheckoutOfUser:
        customer_id = customers.customer_for(db, gateway, settings, user_id, email)
        return _start(db, gateway, settings, user_id, program_id, email, customer_id)


def _start(
    db: Session, gateway: StripeGateway, settings: Settings, user_id: str, program_id: str, email: str | None,
    customer_id: str | None,
) -> CheckoutResult:
    with db.begin():
        program = programs.get(db, program_id)
        if program is None:
            raise ProgramNotFound(program_id)
        if settings.stripe_customers and customer_id is None:
            customer_id = customer_records.get(db, user_id, settings.stripe_livemode)
            if customer_id is None:  # before any lock is taken or anything written
                raise _FirstCheckoutOfUser()
        # Serializes concurrent checkouts of the same user and program (double clicks); the
        # partial unique index on active purchases is the backstop if this were ever skipped.
        locks.take_xact_lock(db, locks.purchase_create_lock_key(user_id, program_id), settings.lock_timeout_ms)
        existing = purchases.active(db, user_id, program_id)
        if existing is not None:
            existing = _settled_if_lapsed(db, gateway, settings, existing)
            if existing.status == PurchaseStatus.PENDING:  # its checkout URL can still be paid
                return CheckoutResult(existing, created=False)
        blocking = existing if existing is not None and existing.status in ACTIVE_STATUSES else None
        if blocking is None:
            purchase = _create_purchase(db, gateway, settings, program, Buyer(user_id, email, customer_id))
    # Raised after the commit, so that what was learned about a lapsed session is kept.
    if blocking is not None:
        raise (PaymentInProgress if blocking.status == PurchaseStatus.AWAITING_PAYMENT else AlreadyPurchased)(blocking)
    return CheckoutResult(purchase, created=True)


@dataclass(frozen=True)
class Buyer:
    user_id: str
    email: str | None
    customer_id: str | None


def checkout_request(settings: Settings, program: Program, purchase_id: uuid.UUID, buyer: Buyer) -> CheckoutRequest:
    """What Stripe is asked for: the program's own settings, else the deployment's."""
    def chosen(own: bool | None, default: bool) -> bool:
        return default if own is None else own

    automatic_tax = chosen(program.automatic_tax, settings.automatic_tax)
    return CheckoutRequest(
        purchase_id=purchase_id, user_id=buyer.user_id, program_id=program.id, program_name=program.name,
        amount=program.amount, currency=program.currency, success_url=settings.success_url,
        cancel_url=settings.cancel_url, email=buyer.email, customer_id=buyer.customer_id,
        allow_promotion_codes=chosen(program.allow_promotion_codes, settings.allow_promotion_codes),
        automatic_tax=automatic_tax,
        tax_behavior=(program.tax_behavior or settings.tax_behavior) if automatic_tax else None,
        tax_code=program.tax_code or settings.tax_code,
        receipt_email=settings.receipt_email, invoice_creation=settings.invoice_creation,
        tax_id_collection=settings.tax_id_collection,
    )


def _create_purchase(db: Session, gateway: StripeGateway, settings: Settings, program: Program, buyer: Buyer) -> Purchase:
    purchase_id = uuid.uuid4()
    request = checkout_request(settings, program, purchase_id, buyer)
    # Taken before the row exists and held until commit: a webhook for this purchase that
    # arrives before Stripe has even answered waits here instead of finding nothing.
    locks.take_xact_lock(db, locks.purchase_lock_key(purchase_id), settings.lock_timeout_ms)
    tracked = purchases.new(Purchase.pending(
        id=purchase_id, user_id=buyer.user_id, program_id=program.id, amount=program.amount, currency=program.currency,
        livemode=settings.stripe_livemode, email=buyer.email, stripe_customer_id=buyer.customer_id,
        tax_behavior=request.tax_behavior,
    ))
    try:
        purchases.write(db, tracked)
    except IntegrityError as exc:
        # Only reachable if the creation lock were bypassed: the index is the backstop.
        if getattr(exc.orig, "diag", None) and exc.orig.diag.constraint_name == ACTIVE_PURCHASE_INDEX:
            raise CheckoutConflict() from exc
        raise
    session = gateway.create_checkout_session(request)
    purchase = tracked.purchase
    purchase.stripe_session_id, purchase.checkout_url = session.id, session.url
    purchase.session_expires_at, purchase.livemode = session.expires_at, session.livemode
    purchases.write(db, tracked)
    log.info("Checkout created purchase %s (session %s)", purchase_id, session.id)
    return purchase


def _settled_if_lapsed(db: Session, gateway: StripeGateway, settings: Settings, purchase: Purchase) -> Purchase:
    """`purchase`, or, if it is pending with a session past its `expires_at` whose `expired`
    webhook has not arrived yet, the purchase as Stripe's own answer leaves it (still pending if
    Stripe says the session is open): the user is neither stuck with a dead checkout URL nor able
    to pay twice."""
    expires_at = purchase.session_expires_at
    if purchase.status != PurchaseStatus.PENDING or expires_at is None or expires_at > datetime.now(UTC):
        return purchase
    locks.take_xact_lock(db, locks.purchase_lock_key(purchase.id), settings.lock_timeout_ms)
    tracked = purchases.load(db, purchase.id)
    if tracked is None:
        return purchase
    session = gateway.retrieve_checkout_session(tracked.purchase.stripe_session_id or "", wait_s=LAPSED_WAITS_FOR_BUDGET_S)
    event_type = lifecycle.snapshot_event_type(session)
    if event_type is not None:
        learn = lifecycle.learn_from_session(event_type, session, settings.stripe_livemode)
        outcome = lifecycle.apply(tracked.purchase, learn, cause="checkout found its session lapsed")
        purchases.write(db, tracked)
        log.info("Checkout settled lapsed purchase %s from Stripe: %s", purchase.id, outcome)
    return tracked.purchase
