"""Why notifications cannot be delivered."""

from __future__ import annotations

from paystore.errors import Refusal


class NotConfigured(Refusal):
    """PAYSTORE_NOTIFY_URL or PAYSTORE_NOTIFY_SECRET is unset; the message names which."""
