"""Domain errors. The HTTP layer maps them to status codes; services never import Flask."""

from __future__ import annotations

from paystore.models import Purchase


class ProgramNotFound(Exception):
    def __init__(self, program_id: str) -> None:
        super().__init__(f"no program with id {program_id!r}")


class PurchaseNotFound(Exception):
    def __init__(self, purchase_id: str) -> None:
        super().__init__(f"no purchase with id {purchase_id!r}")


class AlreadyPurchased(Exception):
    """The user already holds an active purchase of the program that checkout cannot reuse."""

    def __init__(self, purchase: Purchase) -> None:
        if purchase.status == "awaiting_payment":
            message = "a payment for this program is still being processed"
        else:
            message = "this program is already purchased"
        super().__init__(message)
        self.purchase = purchase


class UnrecoverablePurchase(Exception):
    """A paid session names a purchase that cannot be rebuilt: recorded as failed, answered 5xx,
    so Stripe keeps retrying and an operator can replay it once the cause is fixed."""


class CheckoutConflict(Exception):
    """Another checkout for the same user and program committed first (the unique index)."""

    def __init__(self) -> None:
        super().__init__("another checkout for this user and program was just created; retry to get it")


class PurchaseNotYetKnown(Exception):
    """A webhook refers to a purchase this database does not show yet; Stripe must retry."""
