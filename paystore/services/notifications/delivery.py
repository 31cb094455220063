"""Delivering notifications to the shop: at least once, signed, retried for days.

A row is claimed in a short transaction that only pushes its `next_attempt_at` a lease ahead;
the POST runs with no transaction open, and a second short transaction records the answer. A
deliverer killed mid-send leaves the row to be claimed again once the lease lapses: the shop may
see an id twice (at least once), never zero times. Rows of one purchase are sent in order.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import requests
from sqlalchemy.orm import Session

from paystore.services.notifications.errors import NotConfigured
from paystore.services.notifications.signing import signature_header
from paystore.store import notifications

log = logging.getLogger(__name__)

# Shorter than the lease of a claimed row (store.notifications.LEASE): a live deliverer never
# loses its row to another.
POST_TIMEOUT_S = 10.0
BACKOFF_BASE_S = 30.0
BACKOFF_CAP_S = 6 * 3600.0


@dataclass
class DeliveryRun:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    tried: list[uuid.UUID] = field(default_factory=list)


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with full jitter: uniform over [0, min(cap, base * 2^(attempts-1))]."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(attempts - 1, 30)))


def post_notification(
    http: requests.Session, url: str, secrets: tuple[str, ...], notification_id: uuid.UUID, body_text: str
) -> str | None:
    """POST one notification; None when the shop answered 2xx, else why not (never the URL:
    it may carry a credential)."""
    body = body_text.encode()
    headers = {
        "Content-Type": "application/json",
        "Paystore-Notification-Id": str(notification_id),
        "Paystore-Signature": signature_header(body, secrets, int(time.time())),
    }
    try:
        response = http.post(url, data=body, headers=headers, timeout=POST_TIMEOUT_S, allow_redirects=False)
    except requests.RequestException as exc:
        return type(exc).__name__
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


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
        with db.begin():
            claimed = notifications.claim_next(db, run.tried)
        if claimed is None:
            break
        run.tried.append(claimed.id)
        error = post_notification(http, url, secrets, claimed.id, claimed.body)
        if error is None:
            with db.begin():
                notifications.record_delivered(db, claimed)
            run.delivered += 1
            log.info("Notification %s delivered", claimed.id, extra={"notification_id": str(claimed.id)})
            continue
        run.failed += 1
        with db.begin():
            dead = notifications.record_failure(db, claimed, error, timedelta(seconds=backoff_seconds(claimed.attempts)))
        run.dead += dead
        level = logging.ERROR if dead else logging.WARNING
        log.log(level, "Notification %s not delivered (attempt %d): %s%s", claimed.id, claimed.attempts, error,
                "; retries exhausted, marked dead" if dead else "", extra={"notification_id": str(claimed.id)})
    return run
