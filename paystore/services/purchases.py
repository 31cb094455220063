"""Read purchases, and manage the programs they are for."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from paystore.models import Program, Purchase
from paystore.services.errors import PurchaseNotFound


def get_purchase(db: Session, purchase_id: str) -> Purchase:
    try:
        key = uuid.UUID(purchase_id)
    except ValueError:
        raise PurchaseNotFound(purchase_id) from None
    with db.begin():
        purchase = db.get(Purchase, key)
    if purchase is None:
        raise PurchaseNotFound(purchase_id)
    return purchase


def list_user_purchases(db: Session, user_id: str) -> Sequence[Purchase]:
    with db.begin():
        return db.scalars(
            select(Purchase)
            .where(Purchase.user_id == user_id)
            .order_by(Purchase.created_at.desc(), Purchase.id)
        ).all()


class ProgramExists(Exception):
    pass


def add_program(db: Session, program_id: str, name: str, amount: int, currency: str) -> Program:
    with db.begin():
        if db.get(Program, program_id) is not None:
            raise ProgramExists(f"program {program_id!r} already exists")
        program = Program(id=program_id, name=name, amount=amount, currency=currency.lower())
        db.add(program)
    return program


def list_programs(db: Session) -> Sequence[Program]:
    with db.begin():
        return db.scalars(select(Program).order_by(Program.id)).all()
