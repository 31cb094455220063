"""POST /checkout: one purchase per request, created under the lock its webhook will take."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paystore import locks
from paystore.config import Settings
from paystore.models import ACTIVE_STATUSES, Program, Purchase, PurchaseStatus
from paystore.services import lifecycle
from paystore.services.errors import AlreadyPurchased, CheckoutConflict, ProgramNotFound
from paystore.stripe_gateway import CheckoutRequest, StripeGateway

log = logging.getLogger(__name__)

ACTIVE_PURCHASE_INDEX = "uq_purchases_one_active_per_user_program"


class Overloaded(Exception):
    """Every checkout slot of this process is taken: answer 503 at once, never queue."""


class CheckoutSlots:
    """A per-process bound on in-flight checkouts (each holds a thread and a connection across
    the Stripe call), so that webhooks, reads and health checks always find a free thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    @contextmanager
    def take(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            raise Overloaded(f"all {self.limit} checkout slots of this process are busy")
        try:
            yield
        finally:
            self._free.release()


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
        program = db.get(Program, program_id)
        if program is None:
            raise ProgramNotFound(program_id)
        # Serializes concurrent checkouts of the same user and program (double clicks); the
        # partial unique index on active purchases is the backstop if this were ever skipped.
        locks.take_xact_lock(db, locks.purchase_create_lock_key(user_id, program_id), settings.lock_timeout_ms)
        existing = db.scalars(
            select(Purchase).where(
                Purchase.user_id == user_id,
                Purchase.program_id == program_id,
                Purchase.status.in_(ACTIVE_STATUSES),
            )
        ).first()
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
    db.add(purchase)
    try:
        db.flush()
    except IntegrityError as exc:
        # Only reachable if the creation lock were bypassed: the index is the backstop.
        if getattr(exc.orig, "diag", None) and exc.orig.diag.constraint_name == ACTIVE_PURCHASE_INDEX:
            raise CheckoutConflict() from exc
        raise
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
    purchase.stripe_session_id = session.id
    purchase.checkout_url = session.url
    purchase.session_expires_at = session.expires_at
    purchase.livemode = session.livemode
    db.flush()
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
