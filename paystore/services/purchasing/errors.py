"""Why a purchase cannot be made, found or brought up to date."""

from __future__ import annotations

import uuid

from paystore.domain.purchase import Purchase
from paystore.errors import Refusal


class ProgramNotFound(Refusal):
    def __init__(self, program_id: str) -> None:
        super().__init__(f"no program with id {program_id!r}")


class ProgramExists(Refusal):
    def __init__(self, program_id: str) -> None:
        super().__init__(f"program {program_id!r} already exists")


class PurchaseNotFound(Refusal):
    def __init__(self, purchase_id: str) -> None:
        super().__init__(f"no purchase with id {purchase_id!r}")


class AlreadyPurchased(Refusal):
    """The user holds a completed or disputed purchase of the program: checkout cannot reuse it."""

    message = "this program is already purchased"

    def __init__(self, purchase: Purchase) -> None:
        super().__init__(self.message)
        self.purchase_id: uuid.UUID = purchase.id


class PaymentInProgress(AlreadyPurchased):
    """The user's payment for the program is on its way (a delayed method): no second one."""

    message = "a payment for this program is still being processed"


class CheckoutConflict(Refusal):
    """Another checkout for the same user and program committed first (the unique index)."""

    def __init__(self) -> None:
        super().__init__("another checkout for this user and program was just created; retry to get it")


class InvalidSessionId(Refusal, ValueError):
    """The session id is not shaped like a Stripe Checkout Session id."""


class SessionNotFound(Refusal, LookupError):
    """No purchase of ours was made with this session."""


class SessionMismatch(Refusal):
    """Stripe's session names another purchase than the one stored with it: nothing is applied."""


class NotRefundable(Refusal):
    """The purchase was not paid, or nothing of it is left to refund."""


class RefundTooLarge(Refusal):
    """The refund asked for is more than what is left of the payment."""


class IdempotencyKeyReused(Refusal):
    """This Idempotency-Key was used for another refund request of the purchase."""


class RefundRefused(Refusal):
    """Stripe refused the refund (the charge is disputed, refunded already, or less is left than
    asked): trying again will not help; nothing was refunded or recorded."""


class PartialRefundInAnotherCurrency(Refusal):
    """A partial refund of a purchase the buyer paid in their own currency (Adaptive Pricing): which
    currency Stripe reads the amount in depends on how it kept the charge, so paystore asks for
    none; a full refund needs no amount and is safe."""
