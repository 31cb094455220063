"""The notifications table (the transactional outbox): the row each status change writes, and
what the deliverer and operators do with the rows afterwards.

The row itself is written by `purchases.write`, in the statement that changes the status
(`INSERT_FOR_WRITTEN` runs only if that statement wrote the purchase). Delivery is at least once:
a row is leased (`claim_next`, `FOR UPDATE SKIP LOCKED`, so several deliverers never pick the
same row) and its answer recorded in short transactions of their own, with no transaction open
while the shop is asked.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, select, text, true, update
from sqlalchemy.orm import Session, aliased

from paystore.domain.purchase import Purchase, purchase_json
from paystore.domain.refund import Refund
from paystore.models import NotificationRow

# Delivery is retried for this long after the change, then the row is marked dead.
RETRY_FOR = timedelta(days=3)
# Longer than one POST can take (services.notifications.delivery.POST_TIMEOUT_S), so a live
# deliverer never loses its row to another.
LEASE = timedelta(seconds=60)
FILTERS = ("undelivered", "dead", "delivered", "all")

# Selected FROM the writing statement's RETURNING rows (a CTE named `written`): nothing written,
# no notification. `%(id)s` is the purchase's id.
INSERT_FOR_WRITTEN = (
    "INSERT INTO notifications (id, purchase_id, type, body, created_at, next_attempt_at, give_up_at,"
    " attempts, failed_attempts) SELECT %(n_id)s, %(id)s, %(n_type)s, %(n_body)s, %(n_at)s, %(n_at)s,"
    " %(n_give_up)s, 0, 0 FROM written"
)


def parameters(purchase: Purchase, previous_status: str | None) -> dict[str, Any]:
    """The notification of `purchase`'s new status, as parameters of INSERT_FOR_WRITTEN."""
    return _parameters(f"purchase.{purchase.status}", {"purchase": purchase_json(purchase),
                                                       "previous_status": previous_status})


def refund_failed_parameters(purchase: Purchase, refund: Refund) -> dict[str, Any]:
    """The notification that one of the purchase's refunds failed (or was canceled): the buyer
    got nothing back. Written before the status change it may bring, and sent before it."""
    return _parameters("purchase.refund_failed", {
        "purchase": purchase_json(purchase),
        "refund": {"id": refund.id, "amount": refund.amount, "status": str(refund.status),
                   "failure_reason": refund.failure_reason},
    })


def _parameters(notification_type: str, data: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    notification_id = uuid.uuid4()
    body = {"id": str(notification_id), "type": notification_type, "created_at": now.isoformat(), "data": data}
    return {"n_id": notification_id, "n_type": body["type"], "n_body": json.dumps(body, separators=(",", ":")),
            "n_at": now, "n_give_up": now + RETRY_FOR}


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    body: str
    attempts: int


def _skip_the_flush_wait(db: Session) -> None:
    """The deliverer's own commits need not wait for the disk: a lease or a `delivered` mark lost
    in a database crash only means the row is sent again, which at-least-once allows. (The
    notification itself is written by the status change's transaction, which keeps full
    durability.)"""
    db.execute(text("SET LOCAL synchronous_commit TO OFF"))


def claim_next(db: Session, exclude: Sequence[uuid.UUID]) -> Claimed | None:
    """Lease the next due row. Rows of one purchase go in order: a row waits while an older
    undelivered row of the same purchase exists."""
    earlier = aliased(NotificationRow)
    due = (
        select(NotificationRow.id)
        .where(
            NotificationRow.delivered_at.is_(None),
            NotificationRow.dead_at.is_(None),
            NotificationRow.next_attempt_at <= func.now(),
            NotificationRow.id.not_in(exclude),
            ~exists().where(
                and_(
                    earlier.purchase_id == NotificationRow.purchase_id,
                    earlier.delivered_at.is_(None),
                    earlier.dead_at.is_(None),
                    earlier.created_at < NotificationRow.created_at,
                )
            ),
        )
        .order_by(NotificationRow.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    _skip_the_flush_wait(db)
    row = db.execute(
        update(NotificationRow)
        .where(NotificationRow.id == due)
        .values(next_attempt_at=func.now() + LEASE, attempts=NotificationRow.attempts + 1)
        .returning(NotificationRow.id, NotificationRow.body, NotificationRow.attempts)
    ).first()
    return Claimed(*row) if row else None


def record_delivered(db: Session, claimed: Claimed) -> None:
    _skip_the_flush_wait(db)
    db.execute(
        update(NotificationRow)
        .where(NotificationRow.id == claimed.id, NotificationRow.delivered_at.is_(None))
        .values(delivered_at=func.now(), last_error=None)
    )


def record_failure(db: Session, claimed: Claimed, error: str, retry_in: timedelta) -> bool:
    """Schedule the next attempt, or mark the row dead past its give-up time. True if dead."""
    retry_at = func.now() + retry_in
    _skip_the_flush_wait(db)
    dead = db.execute(
        update(NotificationRow)
        .where(NotificationRow.id == claimed.id, NotificationRow.delivered_at.is_(None))
        .values(
            failed_attempts=NotificationRow.failed_attempts + 1,
            last_error=error,
            next_attempt_at=retry_at,
            dead_at=case((retry_at > NotificationRow.give_up_at, func.now()), else_=None),
        )
        .returning(NotificationRow.dead_at.is_not(None))
    ).scalar()
    return bool(dead)


def _where(which: str) -> ColumnElement[bool]:
    return {
        "undelivered": NotificationRow.delivered_at.is_(None) & NotificationRow.dead_at.is_(None),
        "dead": NotificationRow.dead_at.is_not(None),
        "delivered": NotificationRow.delivered_at.is_not(None),
        "all": true(),
    }[which]


def listed(db: Session, which: str, limit: int) -> Sequence[NotificationRow]:
    """Newest first."""
    return db.scalars(
        select(NotificationRow).where(_where(which)).order_by(NotificationRow.created_at.desc()).limit(limit)
    ).all()


def queue_again(db: Session, notification_ids: Sequence[uuid.UUID] | None) -> int:
    """Make rows due now with a fresh retry window (None: every dead row); how many were queued."""
    condition = _where("dead") if notification_ids is None else NotificationRow.id.in_(notification_ids)
    queued = db.execute(
        update(NotificationRow)
        .where(condition)
        .values(delivered_at=None, dead_at=None, next_attempt_at=func.now(), give_up_at=func.now() + RETRY_FOR)
        .returning(NotificationRow.id)
    ).all()
    return len(queued)
