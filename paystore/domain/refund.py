"""Refunds as facts, one per Stripe refund, so that a refund that fails stops counting.

Stripe reports each refund with its own status (`refund.created`, `refund.updated`,
`refund.failed`, `charge.refund.updated`, and the charge's own list in `charge.refunded`). A
refund moves forward only: `requires_action` or `pending`, then `succeeded`, and from there it may
still end `failed` (a card that expired or was cancelled: the money goes back to the shop's
balance, not to the buyer) or `canceled`. Merging by that order makes the same reports, in any
order and repeated, end in the same facts.

A purchase's refunded amount is what its refunds add up to while they count: `pending` and
`requires_action` count as well as `succeeded`, because the shop has decided to give the money
back and the buyer should not keep using the course meanwhile; `failed` and `canceled` do not,
because the buyer got nothing back. When no refund is known one by one (an older endpoint's
`charge.refunded` without its list), the charge's own `amount_refunded` stands in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import StrEnum

from paystore.domain import lifecycle
from paystore.domain.outcome import Outcome
from paystore.domain.purchase import Purchase


class RefundStatus(StrEnum):
    REQUIRES_ACTION = "requires_action"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


COUNTING = frozenset({RefundStatus.REQUIRES_ACTION, RefundStatus.PENDING, RefundStatus.SUCCEEDED})
_ORDER = {RefundStatus.REQUIRES_ACTION: 0, RefundStatus.PENDING: 1, RefundStatus.SUCCEEDED: 2,
          RefundStatus.FAILED: 3, RefundStatus.CANCELED: 3}


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    purchase_id: uuid.UUID
    amount: int
    status: RefundStatus
    failure_reason: str | None = None
    reason: str | None = None

    @property
    def counts(self) -> bool:
        return self.status in COUNTING


def refund_json(refund: Refund) -> dict[str, object]:
    return {"id": refund.id, "amount": refund.amount, "status": str(refund.status),
            "failure_reason": refund.failure_reason, "reason": refund.reason}


def merged(known: Refund | None, seen: Refund) -> Refund:
    """What is known of a refund after one more report of it, whatever the order of reports."""
    if known is None:
        return seen
    later = seen if _ORDER[seen.status] > _ORDER[known.status] else known
    return replace(later, failure_reason=later.failure_reason or known.failure_reason or seen.failure_reason,
                   reason=known.reason or seen.reason)


def refunded_amount(refunds: list[Refund], reported_by_charge: int) -> int:
    """The purchase's refunded amount: its counting refunds, else what the charge reported."""
    if refunds:
        return sum(refund.amount for refund in refunds if refund.counts)
    return reported_by_charge


def apply_refunds(
    purchase: Purchase, known: dict[str, Refund], seen: list[Refund], reported_by_charge: int | None, *, cause: str
) -> tuple[Outcome, list[Refund]]:
    """Merge Stripe's reports of refunds into `known` (the purchase's refunds, changed in place)
    and re-derive the purchase; the outcome, and the refunds whose facts changed (to be written)."""
    changed = []
    for report in seen:
        before = known.get(report.id)
        after = merged(before, report)
        if after != before:
            known[report.id] = after
            changed.append(after)

    def learn(p: Purchase) -> None:
        if reported_by_charge is not None:
            p.reported_refunded_amount = max(p.reported_refunded_amount, reported_by_charge)
        p.refunded_amount = refunded_amount(list(known.values()), p.reported_refunded_amount)

    outcome = lifecycle.apply(purchase, learn, cause=cause)
    if outcome == Outcome.STALE and changed:
        outcome = Outcome.REFUND_FAILED if any(not r.counts for r in changed) else Outcome.RECORDED
    return outcome, changed
