"""Refunds as facts, one per Stripe refund, so that a refund that fails stops counting.

Stripe reports each refund with its own status (`refund.created`, `refund.updated`,
`refund.failed`, `charge.refund.updated`, and the charge's own list in `charge.refunded`). A
refund moves forward only: `requires_action` or `pending`, then `succeeded`, and from there it may
still end `failed` (a card that expired or was cancelled: the money goes back to the shop's
balance, not to the buyer) or `canceled`. Merging by that order makes the same reports, in any
order and repeated, end in the same facts.

A purchase's refunded amount is what its refunds add up to while they count, and nothing else:
`pending` and `requires_action` count as well as `succeeded`, because the shop has decided to give
the money back and the buyer should not keep using the course meanwhile; `failed` and `canceled`
do not, because the buyer got nothing back. The charge's own `amount_refunded` is never used: it
cannot say which refunds it adds up, so it could not tell a refund that later failed from one
that did not. Every refund is therefore known one by one: a `charge.refunded` that does not carry
the charge's complete list (none at all since API version 2022-11-15) makes paystore list the
charge's refunds first (services.stripe_events.webhooks).

Refunds are counted in the currency of the charge (lifecycle.charged): the buyer's with Adaptive
Pricing, where Stripe refunds the buyer in the currency they paid in. A refund reported in
another currency, with no amount in the charge's currency beside it, cannot be added up with the
others and sends the purchase to review.
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


def refunded_amount(refunds: list[Refund]) -> int:
    """The purchase's refunded amount: what its counting refunds add up to."""
    return sum(refund.amount for refund in refunds if refund.counts)


def in_charge_currency(
    purchase: Purchase, refund_id: str, amount: int, currency: str | None,
    presentment: tuple[int, str] | None = None,
) -> tuple[int, str | None]:
    """The refund's amount in the currency the purchase's refunds are compared in
    (lifecycle.charged), and why it cannot be (None: it can). With Adaptive Pricing Stripe may
    report a refund in the integration's currency with the buyer's amount beside it
    (`presentment`): that amount is the one compared with what the buyer paid."""
    _, charged_in = lifecycle.charged(purchase)
    if currency is None or currency.lower() == charged_in.lower():
        return amount, None
    if presentment is not None and presentment[1].lower() == charged_in.lower():
        return presentment[0], None
    return amount, f"refund {refund_id} is in {currency}, the charge in {charged_in}"


def currency_problem(purchase: Purchase, refund_id: str, currency: str | None) -> str | None:
    """Why a refund in `currency` cannot count towards the purchase (None: it can)."""
    return in_charge_currency(purchase, refund_id, 0, currency)[1]


def apply_refunds(
    purchase: Purchase, known: dict[str, Refund], seen: list[Refund], reported_by_charge: int | None, *, cause: str,
    foreign: tuple[str, ...] = (), clash: lifecycle.Clash | None = None,
) -> tuple[Outcome, list[Refund]]:
    """Merge Stripe's reports of refunds into `known` (the purchase's refunds, changed in place)
    and re-derive the purchase; the outcome, and the refunds whose facts changed (to be written).

    `foreign`: why some reported refunds could not be added up (their currency): the purchase goes
    to review. `reported_by_charge` is only kept (the largest seen), for operators to compare."""
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
        p.refunded_amount = refunded_amount(list(known.values()))
        if foreign and not p.review_reason:
            p.review_reason = "; ".join(foreign)

    outcome = lifecycle.apply(purchase, learn, cause=cause, clash=clash)
    if outcome == Outcome.STALE and changed:
        outcome = Outcome.REFUND_FAILED if any(not r.counts for r in changed) else Outcome.RECORDED
    return outcome, changed
