"""A shop's check of paystore's notification signature, written from docs/notifications.md alone
(not from paystore's own verifier), so that the tests also check what the docs tell shops."""

from __future__ import annotations

import hashlib
import hmac
import time


def verify_as_the_docs_say(body: bytes, header: str, secret: str, tolerance_s: int = 300) -> bool:
    """The check docs/notifications.md tells shops to make (written here from the docs)."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    timestamps = [v for k, v in parts if k == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        return False
    if abs(time.time() - int(timestamps[0])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), timestamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")
