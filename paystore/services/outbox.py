"""The transactional outbox: every purchase status change writes its notification row in the
same transaction, so the shop hears of a change if and only if it was committed.

The rows are written by a `before_flush` listener rather than by each caller: webhooks, the
buyer's return, refresh, reconcile, recovery and checkout (settling a lapsed session) all change
statuses, and a listener on every session cannot be forgotten by a new path.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, sessionmaker

from paystore.models import Notification, Purchase, PurchaseStatus
from paystore.services.purchase_json import purchase_json

# Delivery is retried for this long after the change, then the row is marked dead.
RETRY_FOR = timedelta(days=3)


def record_status_changes(factory: sessionmaker[Session]) -> None:
    event.listen(factory, "before_flush", _write_notifications)


def _write_notifications(db: Session, _context: Any, _instances: Any) -> None:
    for obj in [*db.new, *db.dirty]:
        if not isinstance(obj, Purchase):
            continue
        changed, previous = _status_change(obj, is_new=obj in db.new)
        if changed:
            db.add(new_notification(obj, previous))


def _status_change(purchase: Purchase, *, is_new: bool) -> tuple[bool, str | None]:
    """(changed, previous status). A purchase created past pending (recovery) has none before."""
    if is_new:
        return purchase.status != PurchaseStatus.PENDING, None
    history = inspect(purchase).attrs.status.history
    if not history.added:
        return False, None
    previous = str(history.deleted[0]) if history.deleted else None
    return previous != str(purchase.status), previous


def new_notification(purchase: Purchase, previous_status: str | None) -> Notification:
    now = datetime.now(UTC)
    if purchase.created_at is None:
        # A purchase inserted in this flush has no server default yet; the body must show the
        # same created_at as GET /purchases/<id>, so the value is fixed here.
        purchase.created_at = now
    notification_id = uuid.uuid4()
    body = {
        "id": str(notification_id),
        "type": f"purchase.{purchase.status}",
        "created_at": now.isoformat(),
        "data": {"purchase": purchase_json(purchase), "previous_status": previous_status},
    }
    return Notification(
        id=notification_id,
        purchase_id=purchase.id,
        type=body["type"],
        body=json.dumps(body, separators=(",", ":")),
        created_at=now,
        next_attempt_at=now,
        give_up_at=now + RETRY_FOR,
        attempts=0,
        failed_attempts=0,
    )
