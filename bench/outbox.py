"""`python -m bench.outbox`: what the notification outbox costs a status change, and how fast
the deliverer empties it. Prints numbers; asserts nothing. Each figure sits beside its baseline
from the same run (the same status change as a plain UPDATE with no notification; one deliverer
vs two).
Database: as the tests choose it (PAYSTORE_TEST_DATABASE_URL, testcontainers, embedded).
Knobs: BENCH_CHANGES (default 400), BENCH_NOTIFICATIONS (default 400).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from paystore.db import make_engine, make_session_factory
from paystore.devtools.postgres import postgres_server, reset_database
from paystore.devtools.shop import PretendShop
from paystore.domain import lifecycle
from paystore.domain.purchase import PaymentFact, Purchase
from paystore.migrate import upgrade_to_head
from paystore.services.notifications import delivery
from paystore.store import locks, purchases

CHANGES = int(os.environ.get("BENCH_CHANGES", 400))
NOTIFICATIONS = int(os.environ.get("BENCH_NOTIFICATIONS", 400))


def _pending(factory: sessionmaker[Session], n: int, tag: str) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    with factory() as db, db.begin():
        for i, purchase_id in enumerate(ids):
            purchases.write(db, purchases.new(Purchase.pending(
                id=purchase_id, user_id=f"{tag}{i}", program_id="prog_py101", amount=4900, currency="usd",
                livemode=False)))
    return ids


def _with_outbox(db: Session, purchase_id: uuid.UUID) -> None:
    tracked = purchases.load(db, purchase_id)
    lifecycle.apply(tracked.purchase, lambda p: setattr(p, "payment", PaymentFact.PAID), cause="bench")
    purchases.write(db, tracked)


def _without_outbox(db: Session, purchase_id: uuid.UUID) -> None:
    """The baseline: the same read and the same change, written with no notification."""
    tracked = purchases.load(db, purchase_id)
    lifecycle.apply(tracked.purchase, lambda p: setattr(p, "payment", PaymentFact.PAID), cause="bench")
    p = tracked.purchase
    db.execute(text("UPDATE purchases SET status = :s, payment = :pay, completed_at = :c, updated_at = now() WHERE id = :i"),
               {"s": str(p.status), "pay": str(p.payment), "c": p.completed_at, "i": p.id})


def _complete_each(factory: sessionmaker[Session], ids: list[uuid.UUID],
                   change: Callable[[Session, uuid.UUID], None] = _with_outbox) -> list[float]:
    """One transaction per purchase, as a webhook does it: lock, read, apply, write, commit."""
    took = []
    for purchase_id in ids:
        started = time.perf_counter()
        with factory() as db, db.begin():
            locks.take_xact_lock(db, locks.purchase_lock_key(purchase_id), 10_000)
            change(db, purchase_id)
        took.append((time.perf_counter() - started) * 1000)
    return took


def _ms(samples: list[float]) -> str:
    p95 = statistics.quantiles(samples, n=20)[18]
    return f"median {statistics.median(samples):6.2f} ms  p95 {p95:6.2f} ms  (n={len(samples)})"


def bench_status_change(url: str) -> None:
    engine = make_engine(url, pool_size=4, max_overflow=4)
    reset_database(engine)
    factory = make_session_factory(engine)
    samples: dict[str, list[float]] = {"with outbox": [], "without (baseline)": []}
    for round_no in range(4):  # alternate, so drift on a shared machine hits both alike
        for tag, (name, change) in enumerate((("with outbox", _with_outbox), ("without (baseline)", _without_outbox))):
            ids = _pending(factory, CHANGES // 4, f"s{tag}r{round_no}_")
            samples[name] += _complete_each(factory, ids, change)
    print("Status change pending -> completed, one transaction each:")
    for name, values in samples.items():
        print(f"  {name:20} {_ms(values)}")
    engine.dispose()


def bench_delivery(url: str) -> None:
    engine = make_engine(url, pool_size=4, max_overflow=4)
    factory = make_session_factory(engine)
    shop = PretendShop().serve()
    print(f"Delivery of {NOTIFICATIONS} notifications to a local shop (answers 200 at once):")
    try:
        for deliverers in (1, 2):
            reset_database(engine)
            ids = _pending(factory, NOTIFICATIONS, f"d{deliverers}_")
            _complete_each(factory, ids)
            shop.received.clear()

            def run() -> None:
                with factory() as db:
                    delivery.deliver_due(db, shop.notifications_url, ("bench_secret",))

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
    with postgres_server() as url:
        upgrade_to_head(url)
        bench_status_change(url)
        bench_delivery(url)


if __name__ == "__main__":
    main()
