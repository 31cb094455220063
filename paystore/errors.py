"""The base of paystore's expected refusals; each domain defines its own errors beside its code
(`errors.py` in each services package, paystore.stripe.errors, paystore.store.locks)."""

from __future__ import annotations


class Refusal(Exception):
    """The request was turned away before anything was written: bad input (answered 4xx) or
    "not now" (answered 503, so that the caller, or Stripe, tries again).

    A webhook refused so is not recorded as failed: nothing went wrong that an operator must
    replay. The HTTP layer maps each refusal to its status and code (paystore.api.errors).
    """
