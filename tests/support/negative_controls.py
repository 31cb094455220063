"""Negative controls: the same scenario with the lock removed must show the race."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from paystore.domain import lifecycle
from paystore.store import locks


def no_lock(db: Any, key: str, timeout_ms: int) -> float:
    return 0.0


def remove_the_lock_and_meet_before_applying(
    monkeypatch: Any, parties: int, then: Callable[[Any], None] | None = None
) -> None:
    """Negative controls: make the lock a no-op, and hold every handler after it has read the
    purchase until `parties` of them have, the interleaving the lock forbids. `then(learn)`
    may order them further before they write."""
    barrier = threading.Barrier(parties, timeout=10)
    real_apply = lifecycle.apply

    def apply_after_everyone_read(purchase: Any, learn: Any, **kwargs: Any) -> str:
        barrier.wait()
        if then is not None:
            then(learn)
        return real_apply(purchase, learn, **kwargs)

    monkeypatch.setattr(locks, "take_xact_lock", no_lock)
    monkeypatch.setattr(lifecycle, "apply", apply_after_everyone_read)
