"""The notification's signature: Stripe's webhook scheme with paystore's secret, so a shop can
verify it with the code it already has for Stripe (docs/notifications.md)."""

from __future__ import annotations

import hashlib
import hmac
import time

TOLERANCE_S = 300


def _mac(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(body: bytes, secrets: tuple[str, ...], timestamp: int) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, one v1 per secret (rotation)."""
    return ",".join([f"t={timestamp}", *(f"v1={_mac(secret, str(timestamp), body)}" for secret in secrets)])


def verify_signature(body: bytes, header: str, secret: str, tolerance_s: int = TOLERANCE_S) -> bool:
    """What a shop checks: one `t`, recent enough, and a `v1` that matches its secret."""
    parts = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [value for key, value in parts if key == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or abs(time.time() - int(timestamps[0])) > tolerance_s:
        return False
    expected = _mac(secret, timestamps[0], body)
    return any(key == "v1" and hmac.compare_digest(value, expected) for key, value in parts)
