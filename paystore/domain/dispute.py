"""Disputes as facts: what each of Stripe's dispute statuses means for access.

- An *inquiry* (`warning_needs_response`, `warning_under_review`, `warning_closed`) is the bank
  asking questions: no money moves, so it changes nothing.
- A *chargeback* (`needs_response`, `under_review`) has taken the money back provisionally: the
  purchase is `disputed` and keeps its access, since most buyers are who they say they are and
  the shop may still win.
- `lost` (and an appeal of it, `appeal_needs_response`, `appeal_under_review`: the money stays with
  the buyer meanwhile) revokes access: `dispute_lost`.
- `won` and `prevented` (resolved before it became a chargeback) restore it: `completed` again.
  An appeal that wins ends `won`, so a lost dispute can still come back.

The facts only move forward, open < lost < won, so the same reports in any order end the same.
`charge.dispute.funds_withdrawn` and `funds_reinstated` carry the dispute too and are read the
same way: the money moving follows the status, and the status decides.
"""

from __future__ import annotations

from collections.abc import Callable

from paystore.domain.purchase import DisputeFact, Purchase
from paystore.stripe.objects import Dispute

_FACTS = {
    "needs_response": DisputeFact.OPEN,
    "under_review": DisputeFact.OPEN,
    "lost": DisputeFact.LOST,
    "appeal_needs_response": DisputeFact.LOST,
    "appeal_under_review": DisputeFact.LOST,
    "won": DisputeFact.WON,
    "prevented": DisputeFact.WON,
}
INQUIRY_STATUSES = ("warning_needs_response", "warning_under_review", "warning_closed")
_ORDER = {DisputeFact.OPEN: 1, DisputeFact.LOST: 2, DisputeFact.WON: 3}


def fact_of(status: str) -> DisputeFact | None:
    """The fact a dispute status tells, or None (an inquiry, or a status paystore does not know)."""
    return _FACTS.get(status)


def learn_from_dispute(dispute: Dispute) -> Callable[[Purchase], None]:
    def learn(p: Purchase) -> None:
        fact = fact_of(dispute.status)
        if fact is None or (p.dispute is not None and _ORDER[fact] <= _ORDER[p.dispute]):
            return  # an inquiry, or nothing newer than what is known
        p.dispute = fact
        if p.dispute_id is None:
            p.dispute_id = dispute.id

    return learn
