"""`python -m bench.statements`: the CPU one hot statement costs through each way of sending it.

The store sends its statements through `paystore.store.sql` (plain SQL on the transaction's own
psycopg connection). This prints, beside it and in the same run, what the same two statements (a
program read and the advisory lock, as checkout sends them) cost through SQLAlchemy Core:
`exec_driver_sql` (no compilation at all), `Connection.execute(text())` with its compiled form
cached, and `Session.execute(text())`. Thread CPU per statement, the empty transaction's own cost
subtracted; the median of interleaved rounds. Prints numbers; asserts nothing.
Knobs: BENCH_STATEMENTS (3000 transactions per way and round), BENCH_STATEMENT_ROUNDS (5).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.orm import Session

from paystore.db import make_engine, make_session_factory
from paystore.devtools.postgres import postgres_server, reset_database
from paystore.migrate import upgrade_to_head
from paystore.store import sql

TRANSACTIONS = int(os.environ.get("BENCH_STATEMENTS", 3000))
ROUNDS = int(os.environ.get("BENCH_STATEMENT_ROUNDS", 5))
PROGRAM = "SELECT id, name, amount, currency FROM programs WHERE id = %(p)s"
LOCK = "SELECT set_config('lock_timeout', %(t)s, true), pg_advisory_xact_lock(%(k)s)"
PROGRAM_TEXT = text("SELECT id, name, amount, currency FROM programs WHERE id = :p")
LOCK_TEXT = text("SELECT set_config('lock_timeout', :t, true), pg_advisory_xact_lock(:k)")
PROGRAM_ARGS, LOCK_ARGS = {"p": "prog_py101"}, {"t": "1000ms", "k": 4242}


def nothing(db: Session) -> None:
    db.connection()


def store_executor(db: Session) -> None:
    sql.first(db, PROGRAM, PROGRAM_ARGS)
    sql.execute(db, LOCK, LOCK_ARGS)


def core_driver_sql(db: Session) -> None:
    connection = db.connection()
    connection.exec_driver_sql(PROGRAM, PROGRAM_ARGS).first()
    connection.exec_driver_sql(LOCK, LOCK_ARGS)


def core_text_cached(db: Session) -> None:
    connection = db.connection()
    connection.execute(PROGRAM_TEXT, PROGRAM_ARGS).first()
    connection.execute(LOCK_TEXT, LOCK_ARGS)


def session_text(db: Session) -> None:
    db.execute(PROGRAM_TEXT, PROGRAM_ARGS).first()
    db.execute(LOCK_TEXT, LOCK_ARGS)


WAYS: dict[str, Callable[[Session], None]] = {
    "empty transaction": nothing,
    "store.sql (plain cursor)": store_executor,
    "Core exec_driver_sql": core_driver_sql,
    "Core execute(text()), cached": core_text_cached,
    "Session.execute(text())": session_text,
}


def main() -> None:
    with postgres_server() as url:
        upgrade_to_head(url)
        engine = make_engine(url, pool_size=1, max_overflow=0)
        reset_database(engine)
        factory = make_session_factory(engine)
        samples: dict[str, list[float]] = {name: [] for name in WAYS}
        for _ in range(ROUNDS):
            for name, way in WAYS.items():
                with factory() as db:
                    started = time.thread_time()
                    for _ in range(TRANSACTIONS):
                        with db.begin():
                            way(db)
                    samples[name].append((time.thread_time() - started) / TRANSACTIONS * 1e6)
        engine.dispose()
    floor = statistics.median(samples["empty transaction"])
    plain = (statistics.median(samples["store.sql (plain cursor)"]) - floor) / 2
    print(f"Thread CPU per statement, median of {ROUNDS} rounds of {TRANSACTIONS} transactions of 2 statements:")
    for name, values in samples.items():
        if name == "empty transaction":
            print(f"  {name:32} {statistics.median(values):7.1f} us per transaction (subtracted below)")
            continue
        per_statement = (statistics.median(values) - floor) / 2
        print(f"  {name:32} {per_statement:7.1f} us  ({per_statement / plain:4.2f} x the store's)")


if __name__ == "__main__":
    main()
