"""What handling one piece of news from Stripe did: the webhook's `outcome`, and what the buyer's
return, refresh and reconcile report."""

from __future__ import annotations

from enum import StrEnum

from paystore.domain.purchase import PurchaseStatus


class Outcome(StrEnum):
    # The purchase moved to this status.
    AWAITING_PAYMENT = "awaiting_payment"
    COMPLETED = "completed"
    # Moved to `failed`: named apart so that it never reads as a handler failure (FAILED below).
    PAYMENT_FAILED = "payment_failed"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    DISPUTE_LOST = "dispute_lost"
    NEEDS_REVIEW = "needs_review"
    # The status stayed.
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUND_FAILED = "refund_failed"  # a refund failed or was canceled: it stopped counting
    RECORDED = "recorded"  # a new fact with no visible change, e.g. a dispute closed before its `created`
    STALE = "stale"  # nothing new: a replay, or an event that would move the purchase backwards
    # Webhooks only.
    DUPLICATE = "duplicate"  # this event id was handled already
    IGNORED = "ignored"  # a type paystore does not act on, or the expiry of a purchase never committed
    RECOVERED = "recovered"  # the purchase was rebuilt from its session (its checkout rolled back)
    WRONG_MODE = "wrong_mode"  # a test event at a live key or the reverse: recorded, applied to nothing
    FAILED = "failed"  # the handler raised: the record is kept for Stripe's retry or a replay

    @classmethod
    def moved_to(cls, status: PurchaseStatus) -> Outcome:
        return cls.PAYMENT_FAILED if status == PurchaseStatus.FAILED else cls(str(status))

