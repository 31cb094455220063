"""Operating the outbox: what is waiting or dead, and sending rows again."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from paystore.models import NotificationRow
from paystore.store import notifications
from paystore.store.notifications import FILTERS

__all__ = ["FILTERS", "list_notifications", "replay"]


def list_notifications(db: Session, which: str = "undelivered", limit: int = 100) -> Sequence[NotificationRow]:
    """Newest first; `which` is one of FILTERS."""
    with db.begin():
        return notifications.listed(db, which, limit)


def replay(db: Session, notification_ids: Sequence[uuid.UUID] | None = None) -> int:
    """Queue rows to be sent again now (the same id: a shop that has it already ignores it), with a
    fresh retry window. None: every dead row. Returns how many rows were queued."""
    with db.begin():
        return notifications.queue_again(db, notification_ids)
