"""POST /checkout: one purchase per request, created under the lock its webhook will take."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from paystore import locks, sql
from paystore.config import Settings
from paystore.models import ACTIVE_STATUSES, Purchase, PurchaseStatus
from paystore.services import lifecycle
from paystore.services.errors import AlreadyPurchased, CheckoutConflict, ProgramNotFound
from paystore.stripe_gateway import CheckoutRequest, StripeGateway

log = logging.getLogger(__name__)

ACTIVE_PURCHASE_INDEX = "uq_purchases_one_active_per_user_program"
# Hot-path reads as plain SQL (paystore.sql): a third of the CPU of building and compiling a
# select() per request.
_PROGRAM_SQL = "SELECT id, name, amount, currency FROM programs WHERE id = %(p)s"
_ACTIVE_SQL = (
    "SELECT id FROM purchases WHERE user_id = %(u)s AND program_id = %(p)s"
    f" AND status IN ({', '.join(repr(str(s)) for s in ACTIVE_STATUSES)}) LIMIT 1"
)


# A pending purchase is no status change (the outbox writes nothing for it), so it needs no
# unit of work: one plain INSERT, and the object is built from what was written.
_INSERT_SQL = (
    "INSERT INTO purchases (id, user_id, program_id, status, amount, currency, livemode, payment, refunded_amount)"
    " VALUES (%(id)s, %(user_id)s, %(program_id)s, %(status)s, %(amount)s, %(currency)s, %(livemode)s,"
    " %(payment)s, %(refunded_amount)s) RETURNING created_at, updated_at"
)
_SESSION_SQL = (
    "UPDATE purchases SET stripe_session_id = %(stripe_session_id)s, checkout_url = %(checkout_url)s,"
    " session_expires_at = %(session_expires_at)s, livemode = %(livemode)s, updated_at = now() WHERE id = %(id)s"
)


class Program(NamedTuple):
    id: str
    name: str
    amount: int
    currency: str


_INSERTED = ("id", "user_id", "program_id", "status", "amount", "currency", "livemode", "payment", "refunded_amount")


@dataclass(frozen=True)
class CheckoutResult:
    purchase: Purchase
    created: bool


def start_checkout(
    db: Session, gateway: StripeGateway, settings: Settings, user_id: str, program_id: str
) -> CheckoutResult:
    """Create the purchase and its Stripe session in one transaction, or return the open one.

    Lock order is always creation lock, then purchase lock. A webhook takes a purchase lock
    first, and the creation lock after it only to recreate a purchase whose row does not exist,
    which no checkout can be holding: no cycle, no deadlock. A Stripe failure raises and rolls
    everything back: no purchase row is left behind.
    """
    with db.begin():
        row = sql.first(db, _PROGRAM_SQL, {"p": program_id})
        if row is None:
            raise ProgramNotFound(program_id)
        program = Program(*row)
        # Serializes concurrent checkouts of the same user and program (double clicks); the
        # partial unique index on active purchases is the backstop if this were ever skipped.
        locks.take_xact_lock(db, locks.purchase_create_lock_key(user_id, program_id), settings.lock_timeout_ms)
        existing_id = sql.scalar(db, _ACTIVE_SQL, {"u": user_id, "p": program_id})
        existing = db.get(Purchase, existing_id) if existing_id is not None else None
        if existing is not None and _session_usable(db, gateway, settings, existing):
            return CheckoutResult(existing, created=False)
        blocking = existing if existing is not None and existing.status in ACTIVE_STATUSES else None
        if blocking is None:
            purchase = _create_purchase(db, gateway, settings, program, user_id)
    # Raised after the commit, so that what was learned about a lapsed session is kept.
    if blocking is not None:
        raise AlreadyPurchased(blocking)
    return CheckoutResult(purchase, created=True)


def _create_purchase(
    db: Session, gateway: StripeGateway, settings: Settings, program: Program, user_id: str
) -> Purchase:
    purchase_id = uuid.uuid4()
    # Taken before the row exists and held until commit: a webhook for this purchase that
    # arrives before Stripe has even answered waits here instead of finding nothing.
    locks.take_xact_lock(db, locks.purchase_lock_key(purchase_id), settings.lock_timeout_ms)
    purchase = Purchase.new_pending(
        id=purchase_id,
        user_id=user_id,
        program_id=program.id,
        amount=program.amount,
        currency=program.currency,
        livemode=settings.stripe_livemode,
    )
    values = {name: sql.column_value(getattr(purchase, name)) for name in _INSERTED}
    try:
        created_at, updated_at = sql.first(db, _INSERT_SQL, values)
    except IntegrityError as exc:
        # Only reachable if the creation lock were bypassed: the index is the backstop.
        if getattr(exc.orig, "diag", None) and exc.orig.diag.constraint_name == ACTIVE_PURCHASE_INDEX:
            raise CheckoutConflict() from exc
        raise
    set_committed_value(purchase, "created_at", created_at.astimezone(UTC))
    set_committed_value(purchase, "updated_at", updated_at.astimezone(UTC))
    session = gateway.create_checkout_session(
        CheckoutRequest(
            purchase_id=purchase_id,
            user_id=user_id,
            program_id=program.id,
            program_name=program.name,
            amount=program.amount,
            currency=program.currency,
            success_url=settings.success_url,
            cancel_url=settings.cancel_url,
        )
    )
    # Not a status change: one plain UPDATE, and the object is told the values it now holds.
    values = {"stripe_session_id": session.id, "checkout_url": session.url,
              "session_expires_at": session.expires_at, "livemode": session.livemode}
    sql.execute(db, _SESSION_SQL, {**values, "id": purchase_id})
    for name, value in values.items():
        set_committed_value(purchase, name, value)
    log.info("Checkout created purchase %s (session %s)", purchase_id, session.id)
    return purchase


def _session_usable(db: Session, gateway: StripeGateway, settings: Settings, purchase: Purchase) -> bool:
    """True if `purchase` is pending with a checkout URL the user can still pay.

    A pending purchase whose session has passed `expires_at` but whose `expired` webhook has
    not arrived yet is first settled from Stripe's own answer, so the user is neither stuck
    with a dead checkout URL nor able to pay twice.
    """
    if purchase.status != PurchaseStatus.PENDING:
        return False
    expires_at = purchase.session_expires_at
    if expires_at is None or expires_at > datetime.now(UTC):
        return True
    locks.take_xact_lock(db, locks.purchase_lock_key(purchase.id), settings.lock_timeout_ms)
    db.refresh(purchase)
    session = gateway.retrieve_checkout_session(purchase.stripe_session_id or "")
    event_type = lifecycle.snapshot_event_type(session)
    if event_type is None:
        return purchase.status == PurchaseStatus.PENDING
    learn = lifecycle.learn_from_session(event_type, session, settings.stripe_livemode)
    outcome = lifecycle.apply(purchase, learn, cause="checkout found its session lapsed")
    log.info("Checkout settled lapsed purchase %s from Stripe: %s", purchase.id, outcome)
    db.flush()
    return False
