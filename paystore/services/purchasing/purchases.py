"""Reading purchases, and the programs on sale."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from paystore.domain.program import Program
from paystore.domain.purchase import Purchase
from paystore.services.purchasing.errors import ProgramExists, PurchaseNotFound
from paystore.store import programs, purchases


def get_purchase(db: Session, purchase_id: str) -> Purchase:
    try:
        key = uuid.UUID(purchase_id)
    except ValueError:
        raise PurchaseNotFound(purchase_id) from None
    with db.begin():
        purchase = purchases.get(db, key)
    if purchase is None:
        raise PurchaseNotFound(purchase_id)
    return purchase


def list_user_purchases(db: Session, user_id: str) -> list[Purchase]:
    """Newest first."""
    with db.begin():
        return purchases.for_user(db, user_id)


def add_program(db: Session, program: Program) -> Program:
    with db.begin():
        if not programs.add(db, program):
            raise ProgramExists(program.id)
    return program


def list_programs(db: Session) -> list[Program]:
    with db.begin():
        return programs.all_programs(db)
