"""Operating the outbox: what is waiting or dead, and sending rows again."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, func, select, true, update
from sqlalchemy.orm import Session

from paystore.models import Notification
from paystore.services.outbox import RETRY_FOR

FILTERS = ("undelivered", "dead", "delivered", "all")


def _where(which: str) -> ColumnElement[bool]:
    return {
        "undelivered": Notification.delivered_at.is_(None) & Notification.dead_at.is_(None),
        "dead": Notification.dead_at.is_not(None),
        "delivered": Notification.delivered_at.is_not(None),
        "all": true(),
    }[which]


def list_notifications(db: Session, which: str = "undelivered", limit: int = 100) -> Sequence[Notification]:
    with db.begin():
        return db.scalars(
            select(Notification).where(_where(which)).order_by(Notification.created_at.desc()).limit(limit)
        ).all()


def replay(db: Session, notification_ids: Sequence[uuid.UUID] | None = None) -> int:
    """Queue rows to be sent again now (the same id: a shop that has it already ignores it), with a
    fresh retry window. None: every dead row. Returns how many rows were queued."""
    condition = _where("dead") if notification_ids is None else Notification.id.in_(notification_ids)
    with db.begin():
        queued = db.execute(
            update(Notification)
            .where(condition)
            .values(delivered_at=None, dead_at=None, next_attempt_at=func.now(), give_up_at=func.now() + RETRY_FOR)
            .returning(Notification.id)
        ).all()
    return len(queued)
