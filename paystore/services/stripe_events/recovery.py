"""Recreate a purchase whose checkout rolled back after Stripe had created its session.

This happens when checkout's commit fails, or its Stripe call timed out on our side while Stripe
did create the session. If the buyer then pays, the webhook finds no row even though it holds the
purchase lock. Dropping the event would lose a paid sale, so the purchase is rebuilt as checkout
built it: from what paystore itself put into the session (metadata) and the program's price and
settings, never from what Stripe charged. The webhook's own completion check then judges the
session, so a promotion code, Stripe Tax or a free course completes here exactly as it would have
with the row in place, and a session that does not add up needs review.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import Session

from paystore.config import Settings
from paystore.domain import lifecycle
from paystore.domain.outcome import Outcome
from paystore.domain.purchase import Purchase
from paystore.services.purchasing import checkout
from paystore.services.stripe_events.errors import UnrecoverablePurchase
from paystore.store import locks, programs, purchases
from paystore.stripe.objects import CheckoutSession

log = logging.getLogger(__name__)


def recover_purchase(
    db: Session, settings: Settings, event_type: str, session: CheckoutSession, purchase_id: uuid.UUID | None
) -> tuple[Outcome, uuid.UUID | None]:
    """Called with the purchase lock held and no row for `purchase_id`."""
    if event_type == lifecycle.SESSION_EXPIRED or purchase_id is None:
        log.info("Session %s expired; its purchase %s was never committed", session.id, purchase_id)
        return Outcome.IGNORED, None
    user_id = session.metadata.get("user_id")
    program = programs.get(db, session.metadata.get("program_id") or "")
    if not user_id or program is None:
        raise UnrecoverablePurchase(
            f"session {session.id} names purchase {purchase_id}, which cannot be recreated: "
            f"user {user_id!r}, program {session.metadata.get('program_id')!r} (unknown)"
        )
    # Same lock as checkout's creation step: no checkout for this user and program can commit a
    # second active purchase while this one is being recreated.
    locks.take_xact_lock(db, locks.purchase_create_lock_key(user_id, program.id), settings.lock_timeout_ms)
    buyer = checkout.Buyer(user_id, session.customer_email, session.customer_id)
    request = checkout.checkout_request(settings, program, purchase_id, buyer)
    purchase = Purchase.pending(
        id=purchase_id, user_id=user_id, program_id=program.id, amount=request.amount, currency=request.currency,
        livemode=settings.stripe_livemode, stripe_session_id=session.id, email=request.email,
        stripe_customer_id=request.customer_id, tax_behavior=request.tax_behavior,
    )
    conflict = purchases.active(db, user_id, program.id)
    if conflict is not None:
        # The user started another checkout in the meantime; an operator must decide which
        # payment to keep (and refund the other), so this one grants nothing yet.
        purchase.review_reason = f"recovered while purchase {conflict.id} is {conflict.status}"
    # lifecycle.session_mismatch decides the price, as for any webhook: what was bought is the
    # program's price, and the total adds up (discount, exclusive tax; zero with a 100 % code).
    learn = lifecycle.learn_from_session(event_type, session, settings.stripe_livemode)
    outcome = lifecycle.apply(purchase, learn, cause=f"{event_type} (recovered)")
    purchases.write(db, purchases.new(purchase))
    log.warning(
        "Recovered purchase %s from session %s (its checkout rolled back): %s", purchase_id, session.id, outcome
    )
    return (Outcome.NEEDS_REVIEW if outcome == Outcome.NEEDS_REVIEW else Outcome.RECOVERED), purchase_id
