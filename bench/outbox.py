"""`python -m bench.outbox`: what the notification outbox costs a status change, and how fast
the deliverer empties it. Prints numbers; asserts nothing. Each figure sits beside its baseline
from the same run (the same status change without the outbox listener; one deliverer vs two).
Database: as the tests choose it (PAYSTORE_TEST_DATABASE_URL, testcontainers, embedded).
Knobs: BENCH_CHANGES (default 400), BENCH_NOTIFICATIONS (default 400).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from paystore import locks
from paystore.db import make_engine, make_session_factory
from paystore.models import PaymentFact, Purchase
from paystore.services import delivery, lifecycle, outbox
from tests.shop import Shop
from tests.support import migrate_with_alembic, postgres_server, reset_database

CHANGES = int(os.environ.get("BENCH_CHANGES", 400))
NOTIFICATIONS = int(os.environ.get("BENCH_NOTIFICATIONS", 400))


def _pending(factory: sessionmaker[Session], n: int, tag: str) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    with factory() as db, db.begin():
        for i, purchase_id in enumerate(ids):
            db.add(Purchase.new_pending(id=purchase_id, user_id=f"{tag}{i}", program_id="prog_py101",
                                        amount=4900, currency="usd", livemode=False))
    return ids


def _complete_each(factory: sessionmaker[Session], ids: list[uuid.UUID]) -> list[float]:
    """One transaction per purchase, as a webhook does it: lock, read, apply, commit."""
    took = []
    for purchase_id in ids:
        started = time.perf_counter()
        with factory() as db, db.begin():
            locks.take_xact_lock(db, locks.purchase_lock_key(purchase_id), 10_000)
            purchase = db.get_one(Purchase, purchase_id)
            lifecycle.apply(purchase, lambda p: setattr(p, "payment", PaymentFact.PAID), cause="bench")
        took.append((time.perf_counter() - started) * 1000)
    return took


def _ms(samples: list[float]) -> str:
    p95 = statistics.quantiles(samples, n=20)[18]
    return f"median {statistics.median(samples):6.2f} ms  p95 {p95:6.2f} ms  (n={len(samples)})"


def bench_status_change(url: str) -> None:
    engine = make_engine(url, pool_size=4, max_overflow=4)
    reset_database(engine)
    with_outbox = make_session_factory(engine)
    without = sessionmaker(engine, autobegin=False, expire_on_commit=False)  # no listener: the baseline
    assert event.contains(with_outbox, "before_flush", outbox._write_notifications)
    samples: dict[str, list[float]] = {"with outbox": [], "without (baseline)": []}
    for round_no in range(4):  # alternate, so drift on a shared machine hits both alike
        for tag, (name, factory) in enumerate((("with outbox", with_outbox), ("without (baseline)", without))):
            ids = _pending(factory, CHANGES // 4, f"s{tag}r{round_no}_")
            samples[name] += _complete_each(factory, ids)
    print("Status change pending -> completed, one transaction each:")
    for name, values in samples.items():
        print(f"  {name:20} {_ms(values)}")
    engine.dispose()


def bench_delivery(url: str) -> None:
    engine = make_engine(url, pool_size=4, max_overflow=4)
    factory = make_session_factory(engine)
    shop = Shop().start()
    print(f"Delivery of {NOTIFICATIONS} notifications to a local shop (answers 200 at once):")
    try:
        for deliverers in (1, 2):
            reset_database(engine)
            ids = _pending(factory, NOTIFICATIONS, f"d{deliverers}_")
            _complete_each(factory, ids)
            shop.received.clear()

            def run() -> None:
                with factory() as db:
                    delivery.deliver_due(db, shop.url, ("bench_secret",))

            threads = [threading.Thread(target=run) for _ in range(deliverers)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.perf_counter() - started
            sent, unique = len(shop.received), len(set(shop.ids()))
            print(f"  {deliverers} deliverer(s): {sent / took:7.1f} notifications/s  (sent {sent}, distinct {unique})")
    finally:
        shop.stop()
        engine.dispose()


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch, postgres_server(Path(scratch)) as url:
        migrate_with_alembic(url)
        bench_status_change(url)
        bench_delivery(url)


if __name__ == "__main__":
    main()
