"""The transactional outbox: every purchase status change writes its notification row in the
same transaction, so the shop hears of a change if and only if it was committed.

Two writers of purchases, one rule. A change flushed by a Session (recovery, checkout settling
a lapsed session, the CLI, tests) gets its rows from flush listeners, which no new ORM path can
forget. The hot paths (webhooks, the buyer's return, refresh, reconcile) write purchases as
plain rows (paystore.services.purchase_rows), whose `save` inserts the row itself with
`insert_notifications`. Both build it with `notification_row`.

`before_flush` sees the status history and builds the rows; `after_flush` inserts them after
the purchase's own INSERT/UPDATE: the other order would take the foreign
key's row lock on the purchase first, and two writers of one purchase (were its lock ever
bypassed) would deadlock instead of queueing. Plain rows, not ORM objects: the unit of work's
bookkeeping for them cost more CPU than the rest of the outbox (issue 9).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, sessionmaker

from paystore import sql
from paystore.models import Purchase, PurchaseStatus
from paystore.services.purchase_json import purchase_json

# Delivery is retried for this long after the change, then the row is marked dead.
RETRY_FOR = timedelta(days=3)


_PENDING = "paystore_outbox_rows"
_INSERT_SQL = (
    "INSERT INTO notifications (id, purchase_id, type, body, created_at, next_attempt_at, give_up_at,"
    " attempts, failed_attempts) VALUES (%(id)s, %(purchase_id)s, %(type)s, %(body)s, %(created_at)s,"
    " %(next_attempt_at)s, %(give_up_at)s, 0, 0)"
)


def record_status_changes(factory: sessionmaker[Session]) -> None:
    event.listen(factory, "before_flush", _build_notifications)
    event.listen(factory, "after_flush", _insert_notifications)


def _build_notifications(db: Session, _context: Any, _instances: Any) -> None:
    # Rebuilt by every flush: rows left by a flush that failed are never inserted by the next.
    rows = db.info[_PENDING] = []
    new = db.new
    for obj in [*new, *db.dirty]:
        if not isinstance(obj, Purchase):
            continue
        changed, previous = _status_change(obj, is_new=obj in new)
        if changed:
            rows.append(notification_row(obj, previous))


def _insert_notifications(db: Session, _context: Any) -> None:
    rows = db.info.pop(_PENDING, None)
    if rows:
        insert_notifications(db, rows)


def insert_notifications(db: Session, rows: list[dict[str, Any]]) -> None:
    """Insert rows made by `notification_row`, in the caller's transaction."""
    for row in rows:
        sql.execute(db, _INSERT_SQL, row)


def _status_change(purchase: Purchase, *, is_new: bool) -> tuple[bool, str | None]:
    """(changed, previous status). A purchase created past pending (recovery) has none before."""
    if is_new:
        return purchase.status != PurchaseStatus.PENDING, None
    history = inspect(purchase).attrs.status.history
    if not history.added:
        return False, None
    previous = str(history.deleted[0]) if history.deleted else None
    return previous != str(purchase.status), previous


def notification_row(purchase: Purchase, previous_status: str | None) -> dict[str, Any]:
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
    return {
        "id": notification_id,
        "purchase_id": purchase.id,
        "type": body["type"],
        "body": json.dumps(body, separators=(",", ":")),
        "created_at": now,
        "next_attempt_at": now,
        "give_up_at": now + RETRY_FOR,
    }
