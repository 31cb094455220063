"""Admission of checkouts: a bounded share of each process's threads and connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from paystore.errors import Refusal


class Overloaded(Refusal):
    """Every checkout slot of this process is taken: answer 503 at once, never queue."""


class CheckoutSlots:
    """A per-process bound on in-flight checkouts (each holds a thread and a connection across
    the Stripe call), so that webhooks, reads and health checks always find a free thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    @contextmanager
    def take(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            raise Overloaded(f"all {self.limit} checkout slots of this process are busy")
        try:
            yield
        finally:
            self._free.release()
