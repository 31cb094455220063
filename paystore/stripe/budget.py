"""Spending Stripe's rate limit where it matters: checkouts' create calls first.

Stripe limits an account's requests (reads included: 25/s in test mode, 100/s live), and a
public page can be hit by anyone holding a session id (they leak through browser history,
referrers and support screenshots). Two guards, each kept by each process:

- `ReadBudget`: a token bucket for reads (retrieving a session or a payment intent), filled at
  this process's share of PAYSTORE_STRIPE_READS_PER_SECOND (the figure is for all the processes
  counted in PAYSTORE_DB_PROCESSES: Stripe limits the account, not a process). A read
  beyond it is not sent: the buyer's return page answers from the purchase as paystore knows it
  (the webhook completes it anyway), reconcile waits for the next token. Creates never take from
  it, so a flood of reads cannot starve checkouts.
- `SharedReads`: at most one read of a session at a time per process (concurrent returns share
  its answer), and none within `fresh_for_s` of the last one (meanwhile the page answers from the
  purchase). Across processes a session may be read once by each at most, still within the
  budget above.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class ReadBudget:
    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second, self.burst = per_second, burst
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self, wait_s: float = 0.0) -> bool:
        """One read's worth, now or within `wait_s`; False if the budget stayed spent."""
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return True
                short = (1 - self._tokens) / self.per_second
            if now + short > deadline:
                return False
            time.sleep(short)


class SharedReads:
    _PRUNE_AT = 10_000

    def __init__(self, fresh_for_s: float, wait_s: float) -> None:
        self.fresh_for_s, self.wait_s = fresh_for_s, wait_s
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future[object]] = {}
        self._last: dict[str, float] = {}

    def read(self, key: str, fetch: Callable[[], T]) -> T | None:
        """`fetch()`'s answer, shared with the callers that came while it ran; None when `key` was
        read within `fresh_for_s` (the caller answers from what it has)."""
        with self._lock:
            running = self._in_flight.get(key)
            if running is None:
                if time.monotonic() - self._last.get(key, float("-inf")) < self.fresh_for_s:
                    return None
                running = self._in_flight[key] = Future()
                leader = True
            else:
                leader = False
        if not leader:
            return running.result(timeout=self.wait_s)  # type: ignore[return-value]
        try:
            answer = fetch()
            running.set_result(answer)
            return answer
        except BaseException as exc:
            running.set_exception(exc)
            raise
        finally:
            with self._lock:
                del self._in_flight[key]
                self._last[key] = time.monotonic()
                if len(self._last) > self._PRUNE_AT:
                    old = time.monotonic() - self.fresh_for_s
                    self._last = {k: at for k, at in self._last.items() if at >= old}
