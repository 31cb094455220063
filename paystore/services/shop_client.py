"""Sending one notification to the shop: Stripe's signature scheme, and a bounded POST."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import requests

POST_TIMEOUT_S = 10.0


def signature_header(body: bytes, secrets: tuple[str, ...], timestamp: int) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, one v1 per secret (rotation)."""
    signed = f"{timestamp}.".encode() + body
    macs = [hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets]
    return ",".join([f"t={timestamp}", *(f"v1={mac}" for mac in macs)])


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
