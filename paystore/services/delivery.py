"""Delivering notifications to the shop: at least once, signed, retried for days.

A row is claimed in a short transaction (`FOR UPDATE SKIP LOCKED`, so several deliverers never
pick the same row) that only pushes its `next_attempt_at` a lease ahead; the POST runs with no
transaction open, and a second short transaction records the answer. A deliverer killed mid-send
leaves the row to be claimed again once the lease lapses: the shop may see an id twice (at least
once), never zero times. Rows of one purchase are sent in order: a row waits while an older
undelivered row of the same purchase exists.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import requests
from sqlalchemy import and_, case, exists, func, select, text, update
from sqlalchemy.orm import Session, aliased

from paystore.models import Notification
from paystore.services.shop_client import post_notification

log = logging.getLogger(__name__)

# Longer than one POST can take (shop_client.POST_TIMEOUT_S), so a live deliverer never loses
# its row to another.
LEASE = timedelta(seconds=60)
BACKOFF_BASE_S = 30.0
BACKOFF_CAP_S = 6 * 3600.0


def _skip_the_flush_wait(db: Session) -> None:
    """The deliverer's own commits need not wait for the disk: a lease or a `delivered` mark lost
    in a database crash only means the row is sent again, which at-least-once allows. (The
    notification itself is written by the status change's transaction, which keeps full
    durability.)"""
    db.execute(text("SET LOCAL synchronous_commit TO OFF"))


class NotConfigured(Exception):
    """PAYSTORE_NOTIFY_URL or PAYSTORE_NOTIFY_SECRET is unset; the message names which."""


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    body: str
    attempts: int


@dataclass
class DeliveryRun:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    tried: list[uuid.UUID] = field(default_factory=list)


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with full jitter: uniform over [0, min(cap, base * 2^(attempts-1))]."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(attempts - 1, 30)))


def claim_next(db: Session, exclude: list[uuid.UUID]) -> Claimed | None:
    """Lease the next due row to this deliverer, in one short transaction."""
    earlier = aliased(Notification)
    due = (
        select(Notification.id)
        .where(
            Notification.delivered_at.is_(None),
            Notification.dead_at.is_(None),
            Notification.next_attempt_at <= func.now(),
            Notification.id.not_in(exclude),
            ~exists().where(
                and_(
                    earlier.purchase_id == Notification.purchase_id,
                    earlier.delivered_at.is_(None),
                    earlier.dead_at.is_(None),
                    earlier.created_at < Notification.created_at,
                )
            ),
        )
        .order_by(Notification.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    with db.begin():
        _skip_the_flush_wait(db)
        row = db.execute(
            update(Notification)
            .where(Notification.id == due)
            .values(next_attempt_at=func.now() + LEASE, attempts=Notification.attempts + 1)
            .returning(Notification.id, Notification.body, Notification.attempts)
        ).first()
    return Claimed(*row) if row else None


def record_delivered(db: Session, claimed: Claimed) -> None:
    with db.begin():
        _skip_the_flush_wait(db)
        db.execute(
            update(Notification)
            .where(Notification.id == claimed.id, Notification.delivered_at.is_(None))
            .values(delivered_at=func.now(), last_error=None)
        )


def record_failure(db: Session, claimed: Claimed, error: str) -> bool:
    """Schedule the next attempt, or mark the row dead past its give-up time. True if dead."""
    retry_at = func.now() + timedelta(seconds=backoff_seconds(claimed.attempts))
    with db.begin():
        _skip_the_flush_wait(db)
        dead = db.execute(
            update(Notification)
            .where(Notification.id == claimed.id, Notification.delivered_at.is_(None))
            .values(
                failed_attempts=Notification.failed_attempts + 1,
                last_error=error,
                next_attempt_at=retry_at,
                dead_at=case((retry_at > Notification.give_up_at, func.now()), else_=None),
            )
            .returning(Notification.dead_at.is_not(None))
        ).scalar()
    return bool(dead)


def deliver_due(
    db: Session, url: str | None, secrets: tuple[str, ...], *,
    http: requests.Session | None = None, stop: threading.Event | None = None,
) -> DeliveryRun:
    """Send every row due now, once each, then return (rows failing now are retried later)."""
    if not url:
        raise NotConfigured("PAYSTORE_NOTIFY_URL is not set: there is nowhere to deliver to")
    if not secrets:
        raise NotConfigured("PAYSTORE_NOTIFY_SECRET is not set: notifications must be signed")
    http = http or requests.Session()
    run = DeliveryRun()
    while not (stop and stop.is_set()):
        claimed = claim_next(db, run.tried)
        if claimed is None:
            break
        run.tried.append(claimed.id)
        error = post_notification(http, url, secrets, claimed.id, claimed.body)
        if error is None:
            record_delivered(db, claimed)
            run.delivered += 1
            log.info("Notification %s delivered", claimed.id, extra={"notification_id": str(claimed.id)})
            continue
        run.failed += 1
        dead = record_failure(db, claimed, error)
        run.dead += dead
        level = logging.ERROR if dead else logging.WARNING
        log.log(level, "Notification %s not delivered (attempt %d): %s%s", claimed.id, claimed.attempts, error,
                "; retries exhausted, marked dead" if dead else "", extra={"notification_id": str(claimed.id)})
    return run
