"""The programs table: what is on sale, at which price, with which checkout settings."""

from __future__ import annotations

from dataclasses import astuple, fields

from sqlalchemy import select
from sqlalchemy.orm import Session

from paystore.domain.program import Program
from paystore.models import ProgramRow
from paystore.store import sql

_COLUMNS = tuple(f.name for f in fields(Program))
# Plain SQL on the hot path (checkout reads the price every time): building and compiling a
# select() cost a third of the read.
_BY_ID = f"SELECT {', '.join(_COLUMNS)} FROM programs WHERE id = %(p)s"


def get(db: Session, program_id: str) -> Program | None:
    row = sql.first(db, _BY_ID, {"p": program_id})
    return None if row is None else Program(*row)


def add(db: Session, program: Program) -> bool:
    """Insert the program; False if one with its id exists already."""
    if db.get(ProgramRow, program.id) is not None:
        return False
    db.add(ProgramRow(**dict(zip(_COLUMNS, astuple(program), strict=True))))
    db.flush()
    return True


def all_programs(db: Session) -> list[Program]:
    rows = db.execute(select(*(getattr(ProgramRow, name) for name in _COLUMNS)).order_by(ProgramRow.id))
    return [Program(*row) for row in rows]
