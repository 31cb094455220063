"""May this user use this program now? The one question a shop asks before it opens a lesson."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from paystore.domain.purchase import GRANTING_STATUSES, Purchase
from paystore.services.purchasing.errors import ProgramNotFound
from paystore.store import programs, purchases


@dataclass(frozen=True)
class Access:
    access: bool
    purchase: Purchase | None


def program_access(db: Session, user_id: str, program_id: str) -> Access:
    """Decided by the purchase that grants, else the active one, else the newest. Completed and
    disputed grant; refunded, dispute_lost and needs_review grant nothing."""
    with db.begin():
        if programs.get(db, program_id) is None:
            raise ProgramNotFound(program_id)
        purchase = purchases.deciding_access(db, user_id, program_id)
    return Access(purchase is not None and purchase.status in GRANTING_STATUSES, purchase)
