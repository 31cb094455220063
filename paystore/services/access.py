"""May this user use this program now? The one question a shop asks before it opens a lesson."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from paystore.models import ACTIVE_STATUSES, Program, Purchase, PurchaseStatus
from paystore.services.errors import ProgramNotFound

# A disputed payment keeps access until the dispute is lost (won: back to completed). Refunded,
# dispute_lost and needs_review grant nothing.
GRANTING_STATUSES = (PurchaseStatus.COMPLETED, PurchaseStatus.DISPUTED)


@dataclass(frozen=True)
class Access:
    access: bool
    purchase: Purchase | None


def program_access(db: Session, user_id: str, program_id: str) -> Access:
    """The purchase that decides: one that grants, else the active one, else the newest."""
    rank = case(
        (Purchase.status.in_(GRANTING_STATUSES), 0),
        (Purchase.status.in_(ACTIVE_STATUSES), 1),
        else_=2,
    )
    with db.begin():
        if db.get(Program, program_id) is None:
            raise ProgramNotFound(program_id)
        purchase = db.scalars(
            select(Purchase)
            .where(Purchase.user_id == user_id, Purchase.program_id == program_id)
            .order_by(rank, Purchase.created_at.desc(), Purchase.id)
            .limit(1)
        ).first()
    granted = purchase is not None and purchase.status in GRANTING_STATUSES
    return Access(granted, purchase)
