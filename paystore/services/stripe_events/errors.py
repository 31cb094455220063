"""Why an event cannot be applied now."""

from __future__ import annotations

from paystore.errors import Refusal


class PurchaseNotYetKnown(Refusal):
    """A webhook refers to a purchase this database does not show yet; Stripe must retry."""


class UnrecoverablePurchase(Exception):
    """A paid session names a purchase that cannot be rebuilt: recorded as failed, answered 5xx,
    so Stripe keeps retrying and an operator can replay it once the cause is fixed."""


class IncompatibleApiVersion(Exception):
    """The event is rendered in an API version that changes the meaning of a field paystore reads:
    recorded as failed and answered 5xx, so nothing is applied from a misread field."""
