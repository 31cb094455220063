"""The purchases table: reads, and `write`, the one function that changes a purchase.

`write` sends what changed since the purchase was read (the whole row, for a new one) and, when
the status changed, the shop's notification, in one statement: a data-modifying CTE. The shop
therefore hears of a change if and only if it commits (the transactional outbox), and the
purchase row is written before the notification's foreign key looks at it, so two writers of one
purchase (were its lock ever bypassed) would queue on the row instead of deadlocking. Callers
hold the purchase's lock from the read they change to their commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from sqlalchemy.orm import Session

from paystore.domain.purchase import (
    ACTIVE_STATUSES,
    GRANTING_STATUSES,
    OPEN_STATUSES,
    DisputeFact,
    PaymentFact,
    Purchase,
    PurchaseStatus,
)
from paystore.store import notifications, sql

COLUMNS = tuple(f.name for f in fields(Purchase))
_values = attrgetter(*COLUMNS)
_STATUS = COLUMNS.index("status")
_TIMESTAMPS = tuple(i for i, name in enumerate(COLUMNS) if name.endswith("_at"))
# Who bought what, at which price, when: never rewritten once inserted.
_FIXED = {"id", "user_id", "program_id", "amount", "currency", "created_at", "updated_at"}
_WRITABLE = tuple((i, name) for i, name in enumerate(COLUMNS) if name not in _FIXED)
_INSERTED = tuple(name for name in COLUMNS if name != "updated_at")

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM purchases"
_BY_ID = f"{_SELECT} WHERE id = %(id)s"
_BY_SESSION = f"{_SELECT} WHERE stripe_session_id = %(s)s"
_FOR_USER = f"{_SELECT} WHERE user_id = %(u)s ORDER BY created_at DESC, id"


def _status_in(statuses: tuple[PurchaseStatus, ...]) -> str:
    return f"status IN ({', '.join(repr(str(s)) for s in statuses)})"


_ACTIVE = f"{_SELECT} WHERE user_id = %(u)s AND program_id = %(p)s AND {_status_in(ACTIVE_STATUSES)} LIMIT 1"
_OPEN_BEFORE = f"{_SELECT} WHERE {_status_in(OPEN_STATUSES)} AND created_at < %(cutoff)s ORDER BY created_at"
# The purchase that decides access: one that grants, else an active one, else the newest.
_DECIDING = (
    f"{_SELECT} WHERE user_id = %(u)s AND program_id = %(p)s ORDER BY CASE WHEN {_status_in(GRANTING_STATUSES)} THEN 0"
    f" WHEN {_status_in(ACTIVE_STATUSES)} THEN 1 ELSE 2 END, created_at DESC, id LIMIT 1"
)
_ID_BY_INTENT = "SELECT id FROM purchases WHERE stripe_payment_intent_id = %(pi)s"
_ID_BY_SESSION = "SELECT id FROM purchases WHERE stripe_session_id = %(s)s"
_ID_BY_CHARGE = "SELECT id FROM purchases WHERE stripe_charge_id = %(c)s"
_INSERT = (f"INSERT INTO purchases ({', '.join(_INSERTED)}) VALUES ({', '.join(f'%({n})s' for n in _INSERTED)})"
           " RETURNING updated_at")
_UPDATE = "UPDATE purchases SET {}, updated_at = now() WHERE id = %(id)s RETURNING updated_at".format


def with_notification(statement: str, returned: str) -> str:
    """`statement` (which RETURNs `returned`) and the shop's notification in one statement: the
    notification is inserted only if the statement wrote its row (the transactional outbox). Its
    parameters come from paystore.store.notifications."""
    return f"WITH written AS ({statement}), told AS ({notifications.INSERT_FOR_WRITTEN}) SELECT {returned} FROM written"


class PurchaseGone(LookupError):
    """The purchase being written is not in the database (it was never committed, or removed)."""


@dataclass(slots=True)
class Tracked:
    """A purchase and the row the database holds for it (None: not inserted yet)."""

    purchase: Purchase
    written: tuple[Any, ...] | None


def _purchase(row: tuple[Any, ...]) -> Purchase:
    values = list(row)
    for i in _TIMESTAMPS:  # timestamptz comes back in the session's TimeZone; paystore hands out UTC
        if values[i] is not None:
            values[i] = values[i].astimezone(UTC)
    purchase = Purchase(*values)
    purchase.status = PurchaseStatus(purchase.status)
    purchase.payment = PaymentFact(purchase.payment)
    if purchase.dispute is not None:
        purchase.dispute = DisputeFact(purchase.dispute)
    return purchase


def _one(db: Session, statement: str, params: dict[str, Any]) -> Purchase | None:
    row = sql.first(db, statement, params)
    return None if row is None else _purchase(row)


def new(purchase: Purchase) -> Tracked:
    """A purchase to insert with the next `write`."""
    return Tracked(purchase, None)


def load(db: Session, purchase_id: uuid.UUID) -> Tracked | None:
    """Read a purchase to change it (the caller holds its lock until commit)."""
    purchase = _one(db, _BY_ID, {"id": purchase_id})
    return None if purchase is None else Tracked(purchase, _values(purchase))


def write(db: Session, tracked: Tracked) -> None:
    """Write what changed since `tracked` was read or last written, with the shop's notification
    if the status changed; nothing at all if nothing changed."""
    purchase, written = tracked.purchase, tracked.written
    if written is None:
        if purchase.created_at is None:
            purchase.created_at = datetime.now(UTC)  # the notification's body shows it as GET does
        values = _values(purchase)
        params = {name: sql.column_value(value) for name, value in zip(COLUMNS, values, strict=True) if name != "updated_at"}
        statement, previous = _INSERT, None
        status_changed = purchase.status != PurchaseStatus.PENDING
    else:
        values = _values(purchase)
        params = {name: sql.column_value(values[i]) for i, name in _WRITABLE if values[i] != written[i]}
        if not params:
            return
        statement = _UPDATE(", ".join(f"{name} = %({name})s" for name in params))
        params["id"] = purchase.id
        previous = str(written[_STATUS])
        status_changed = "status" in params
    if status_changed:
        statement = with_notification(statement, "updated_at")
        params.update(notifications.parameters(purchase, previous))
    updated_at = sql.scalar(db, statement, params)
    if updated_at is None:
        raise PurchaseGone(f"purchase {purchase.id} is not in the database")
    purchase.updated_at = updated_at.astimezone(UTC)
    tracked.written = _values(purchase)


def get(db: Session, purchase_id: uuid.UUID) -> Purchase | None:
    return _one(db, _BY_ID, {"id": purchase_id})


def by_session(db: Session, session_id: str) -> Purchase | None:
    return _one(db, _BY_SESSION, {"s": session_id})


def id_for_session(db: Session, session_id: str) -> uuid.UUID | None:
    return sql.scalar(db, _ID_BY_SESSION, {"s": session_id})


def id_for_payment_intent(db: Session, payment_intent_id: str) -> uuid.UUID | None:
    return sql.scalar(db, _ID_BY_INTENT, {"pi": payment_intent_id})


def id_for_charge(db: Session, charge_id: str) -> uuid.UUID | None:
    return sql.scalar(db, _ID_BY_CHARGE, {"c": charge_id})


def active(db: Session, user_id: str, program_id: str) -> Purchase | None:
    """The user's active purchase of the program (at most one: a partial unique index)."""
    return _one(db, _ACTIVE, {"u": user_id, "p": program_id})


def deciding_access(db: Session, user_id: str, program_id: str) -> Purchase | None:
    return _one(db, _DECIDING, {"u": user_id, "p": program_id})


def for_user(db: Session, user_id: str) -> list[Purchase]:
    """Newest first."""
    return [_purchase(row) for row in sql.rows(db, _FOR_USER, {"u": user_id})]


def open_before(db: Session, cutoff: datetime) -> list[Purchase]:
    """Purchases still pending or awaiting payment, created before `cutoff`, oldest first."""
    return [_purchase(row) for row in sql.rows(db, _OPEN_BEFORE, {"cutoff": cutoff})]
