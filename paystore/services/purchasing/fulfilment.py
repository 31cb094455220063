"""Fulfilment from Stripe's current view of a Checkout Session: the buyer's return, a shop's
refresh, and reconcile all apply it the way a webhook would.

Stripe is asked first, outside any transaction (no lock is held while the network is slow), and
the answer is then applied under the purchase's own lock with the webhook's lifecycle rules.
Facts only move forward, so an answer that is a little old can never undo a newer webhook, and a
return racing its webhook makes exactly one transition: whichever comes second finds it done.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from paystore.config import Settings
from paystore.domain import lifecycle
from paystore.domain.outcome import Outcome
from paystore.domain.purchase import OPEN_STATUSES, Purchase
from paystore.services.purchasing import purchases as purchase_reads
from paystore.services.purchasing.errors import InvalidSessionId, PurchaseNotFound, SessionMismatch, SessionNotFound
from paystore.store import locks, purchases
from paystore.stripe.budget import SharedReads
from paystore.stripe.errors import StripeRateLimited
from paystore.stripe.gateway import StripeGateway
from paystore.stripe.objects import CheckoutSession

# Stripe's ids: a prefix and letters, digits and underscores; anything else is not a session.
SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")


@dataclass(frozen=True)
class StripeView:
    """What Stripe says about one session now, and the event that amounts to (None: still open)."""

    session: CheckoutSession
    event_type: str | None
    says: str


@dataclass(frozen=True)
class Applied:
    purchase: Purchase
    status_before: str
    status_after: str
    outcome: Outcome | None  # None when Stripe still shows the session open


def ask_stripe(gateway: StripeGateway, session_id: str, *, wait_s: float = 0.0) -> StripeView:
    """Retrieve the session (and, for a delayed payment, its intent). Call outside a transaction.
    `wait_s`: how long to wait for the budget of Stripe reads (paystore.stripe.budget)."""
    session = gateway.retrieve_checkout_session(session_id, wait_s=wait_s)
    says = f"{session.status}/{session.payment_status}"
    intent_status = None
    if session.status == "complete" and session.payment_status == "unpaid" and session.payment_intent_id:
        # A delayed payment's session stays complete/unpaid whatever happens; its intent tells.
        intent_status = gateway.payment_intent_status(session.payment_intent_id, wait_s=wait_s)
        says += f" ({intent_status})"
    return StripeView(session, lifecycle.snapshot_event_type(session, intent_status), says)


def apply_view(
    db: Session, settings: Settings, purchase_id: uuid.UUID, view: StripeView, *, cause: str, dry_run: bool = False
) -> Applied:
    """Apply `view` to the purchase in one transaction under its lock (rolled back if dry_run)."""
    transaction = db.begin()
    try:
        locks.take_xact_lock(db, locks.purchase_lock_key(purchase_id), settings.lock_timeout_ms)
        tracked = purchases.load(db, purchase_id)
        if tracked is None:
            raise PurchaseNotFound(str(purchase_id))
        purchase = tracked.purchase
        _check_session_belongs(purchase, view.session)
        before, outcome = str(purchase.status), None
        if view.event_type is not None:
            learn = lifecycle.learn_from_session(view.event_type, view.session, settings.stripe_livemode)
            outcome = lifecycle.apply(purchase, learn, cause=cause)
            if not dry_run:  # a dry run sends no write at all, not even one it rolls back
                purchases.write(db, tracked)
        after = str(purchase.status)
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    except BaseException:
        transaction.rollback()
        raise
    return Applied(purchase, before, after, outcome)


def _check_session_belongs(purchase: Purchase, session: CheckoutSession) -> None:
    named = session.metadata.get("purchase_id")  # absent on legacy sessions made before paystore
    if session.id != purchase.stripe_session_id or (named is not None and named.lower() != str(purchase.id)):
        raise SessionMismatch(
            f"session {session.id} names purchase {named}, but is stored with purchase {purchase.id}"
        )


def return_from_checkout(
    db: Session, gateway: StripeGateway, settings: Settings, reads: SharedReads, session_id: str
) -> Purchase:
    """The buyer's browser came back from Stripe with `session_id`: complete what Stripe says.

    A public page: Stripe is read at most once at a time per session, not again within a few
    seconds, and not past the read budget (paystore.stripe.budget); meanwhile the page answers
    from the purchase as paystore knows it, which the webhook completes anyway."""
    if not SESSION_ID.fullmatch(session_id):
        raise InvalidSessionId("session_id must be a Stripe Checkout Session id (cs_...)")
    with db.begin():
        purchase = purchases.by_session(db, session_id)
    if purchase is None:
        # Checked before asking Stripe: a forged id costs no Stripe call.
        raise SessionNotFound(f"no purchase was made with session {session_id}")
    return _bring_up_to_date(db, gateway, settings, reads, purchase, cause="buyer returned from checkout")


def refresh(db: Session, gateway: StripeGateway, settings: Settings, purchase_id: str) -> Purchase:
    """POST /purchases/<id>/refresh: the same, for shops that keep their own success page. The
    shop asks on purpose, with its token: Stripe is asked now (a spent read budget is a 503)."""
    purchase = purchase_reads.get_purchase(db, purchase_id)
    return _bring_up_to_date(db, gateway, settings, None, purchase, cause="refresh requested")


def _bring_up_to_date(
    db: Session, gateway: StripeGateway, settings: Settings, reads: SharedReads | None, purchase: Purchase, *, cause: str
) -> Purchase:
    session_id = purchase.stripe_session_id
    if purchase.status not in OPEN_STATUSES or session_id is None:
        return purchase  # nothing a session says can move it on: no Stripe call for a reload
    if reads is None:
        view = ask_stripe(gateway, session_id)
    else:
        try:
            view = reads.read(session_id, lambda: ask_stripe(gateway, session_id))
        except StripeRateLimited:
            view = None  # the budget is spent (or Stripe's limit reached): answer what paystore knows
    if view is None:
        return purchase
    if view.event_type is None:
        # Stripe says nothing that moves the purchase on (the session is still open): no lock and
        # no transaction, so that a crowd on one leaked session id cannot queue on the purchase's
        # lock in front of its webhook.
        _check_session_belongs(purchase, view.session)
        return purchase
    return apply_view(db, settings, purchase.id, view, cause=cause).purchase
