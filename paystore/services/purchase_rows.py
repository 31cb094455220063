"""A purchase read and written back as a plain row, under its lock, with its outbox row.

Why not the ORM here: the webhook, the buyer's return and refresh each load one purchase, let
`lifecycle.apply` add facts, and write it back. Through the Session that load (`Session.get`)
and write (a unit-of-work flush, with the outbox listeners) cost more CPU than all the rest of
the webhook (issue 9). Here the row is read with one SELECT into a `Purchase` that no Session
tracks, and `save` writes back only the columns that changed, with one UPDATE.

The outbox rule holds here as it does for a flush (paystore.services.outbox): `save` writes the
status change and the shop's notification in the caller's transaction, the purchase first (its
row lock before the notification's foreign key check), so the shop hears of a change if and
only if it commits. The caller holds the purchase's lock from `load` to its commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session, configure_mappers
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import NoResultFound
from sqlalchemy.orm.util import identity_key

from paystore import sql
from paystore.models import Purchase
from paystore.services import outbox

_COLUMNS = tuple(column.key for column in Purchase.__table__.columns)
# An instance with its ORM state, without __init__. The constructor would configure the mappers
# first; this does not, so they are configured here (every model is in paystore.models).
configure_mappers()
_NEW_PURCHASE = inspect(Purchase).class_manager.new_instance
_SELECT_SQL = f"SELECT {', '.join(_COLUMNS)} FROM purchases WHERE id = %(id)s"
# What lifecycle rules may change; id, owner, price and creation are never rewritten.
_WRITABLE = tuple(name for name in _COLUMNS if name not in ("id", "user_id", "program_id", "amount", "currency",
                                                              "created_at", "updated_at"))


@dataclass(frozen=True)
class LockedPurchase:
    """A purchase as read under its lock, and the row it was read from."""

    purchase: Purchase
    as_read: dict[str, Any]


def load(db: Session, purchase_id: uuid.UUID) -> LockedPurchase | None:
    row = sql.first(db, _SELECT_SQL, {"id": purchase_id})
    if row is None:
        return None
    # timestamptz comes back in the session's TimeZone; paystore hands out UTC (models.UtcDateTime).
    as_read = {name: value.astimezone(UTC) if isinstance(value, datetime) else value
               for name, value in zip(_COLUMNS, row, strict=True)}
    return LockedPurchase(untracked_purchase(as_read), as_read)


def untracked_purchase(row: dict[str, Any]) -> Purchase:
    """A `Purchase` holding `row` as its committed values, as a query would load it.

    Not `Purchase(**row)`: the constructor's 24 instrumented attribute sets cost more than the
    SELECT's own Python work. Changes made afterwards (lifecycle.apply) are tracked as usual.
    """
    purchase = _NEW_PURCHASE()
    purchase.__dict__.update(row)
    return purchase


def load_one(db: Session, purchase_id: uuid.UUID) -> LockedPurchase:
    """`load`, for a purchase that must exist (raises NoResultFound, as Session.get_one does)."""
    locked = load(db, purchase_id)
    if locked is None:
        raise NoResultFound(f"no purchase {purchase_id}")
    return locked


def save(db: Session, locked: LockedPurchase) -> None:
    """Write what changed since `load`, and the notification if the status changed."""
    purchase, as_read = locked.purchase, locked.as_read
    changed = {name: sql.column_value(value) for name in _WRITABLE if (value := getattr(purchase, name)) != as_read[name]}
    if not changed:
        return
    assignments = ", ".join(f"{name} = %({name})s" for name in changed)
    purchase.updated_at = sql.scalar(
        db, f"UPDATE purchases SET {assignments}, updated_at = now() WHERE id = %(id)s RETURNING updated_at",
        {**changed, "id": purchase.id},
    ).astimezone(UTC)
    if "status" in changed:
        outbox.insert_notifications(db, [outbox.notification_row(purchase, str(as_read["status"]))])
    # What was written is now the row as read: a second save writes only later changes.
    as_read.update({name: getattr(purchase, name) for name in (*changed, "updated_at")})
    # The Session may hold its own copy (the return page looked the purchase up first): it is
    # told what was written, as a refresh would (a rollback expires it with the rest).
    cached = db.identity_map.get(identity_key(Purchase, purchase.id))
    if cached is not None:
        for name in (*changed, "updated_at"):
            set_committed_value(cached, name, getattr(purchase, name))
