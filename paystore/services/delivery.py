"""Delivering notifications to the shop: at least once, signed, retried for days.

A row is claimed in a short transaction (`FOR UPDATE SKIP LOCKED`, so several deliverers never
pick the same row) that only pushes its `next_attempt_at` a lease ahead; the POST runs with no
transaction open, and a second short transaction records the answer. A deliverer killed mid-send
leaves the row to be claimed again once the lease lapses: the shop may see an id twice (at least
once), never zero times. Rows of one purchase are sent in order: a row waits while an older
undelivered row of the same purchase exists.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import requests
from sqlalchemy import and_, case, exists, func, select, text, update
from sqlalchemy.orm import Session, aliased

from paystore.models import Notification

log = logging.getLogger(__name__)

POST_TIMEOUT_S = 10.0
# Longer than one POST can take, so a live deliverer never loses its row to another.
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


def signature_header(body: bytes, secrets: tuple[str, ...], timestamp: int) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, one v1 per secret (rotation)."""
    signed = f"{timestamp}.".encode() + body
    macs = [hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets]
    return ",".join([f"t={timestamp}", *(f"v1={mac}" for mac in macs)])


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


def post(http: requests.Session, url: str, secrets: tuple[str, ...], claimed: Claimed) -> str | None:
    """POST one notification; None when the shop answered 2xx, else why not (never the URL:
    it may carry a credential)."""
    body = claimed.body.encode()
    headers = {
        "Content-Type": "application/json",
        "Paystore-Notification-Id": str(claimed.id),
        "Paystore-Signature": signature_header(body, secrets, int(time.time())),
    }
    try:
        response = http.post(url, data=body, headers=headers, timeout=POST_TIMEOUT_S, allow_redirects=False)
    except requests.RequestException as exc:
        return type(exc).__name__
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


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
        error = post(http, url, secrets, claimed)
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
