"""One Stripe Customer per user: made at the user's first checkout, reused ever after.

Why a Customer at all: without one, every checkout makes a new guest in Stripe, so a buyer's
purchases, receipts and saved details are scattered, and support cannot find them by person.

Why its own transaction, before the checkout's: the Customer is worth keeping whatever becomes of
that checkout (a checkout rolled back by a Stripe failure would otherwise forget a Customer
Stripe already made), and no checkout holds its locks while a Customer is being made. Checkout
reads the user's Customer inside its own transaction and comes here only when there is none.
Two first checkouts of one user at once (two programs, two tabs) are serialized by the user's
`customer:create:<user_id>` lock, so the second finds the first's Customer instead of making
another.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paystore.config import Settings
from paystore.store import customers, locks
from paystore.stripe.gateway import StripeGateway

log = logging.getLogger(__name__)


def customer_for(db: Session, gateway: StripeGateway, settings: Settings, user_id: str, email: str | None) -> str:
    """The user's Stripe Customer id, made now (with `email`) if the user has none."""
    livemode = settings.stripe_livemode
    try:
        with db.begin():
            locks.take_xact_lock(db, locks.customer_create_lock_key(user_id), settings.lock_timeout_ms)
            found = customers.get(db, user_id, livemode)
            if found is None:
                found = gateway.create_customer(user_id, email, livemode)
                customers.add(db, user_id, livemode, found)
                log.info("Created Stripe customer %s for user %s", found, user_id)
    except IntegrityError:
        # Only reachable if the lock were bypassed: another checkout stored the user's customer first.
        with db.begin():
            found = customers.get(db, user_id, livemode)
        if found is None:
            raise
    return found
