"""Scale-out: two paystore instances (two gunicorn masters) behind Debian's PgBouncer in
transaction pooling mode, with fewer server connections than the instances hold client ones.

The races run across the instances: checkout on one, its webhook on the other, forced by the
Stripe stand-in (webhook delivered before the session-create call is answered) and observed in
pg_locks. Negative controls: the same race with the lock removed loses the sale, and a
session-level advisory lock behind PgBouncer is shown to leak and to fail to exclude.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from paystore.db import make_engine, sqlalchemy_url
from paystore.devtools.pgbouncer import admin_console, libpq_url, pgbouncer
from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.store import locks
from tests.support.api import Api
from tests.support.database import PGBOUNCER_POOL_SIZE, count, purchase_row
from tests.support.locks import advisory_lock_holders, webhook_before_checkout_ends
from tests.support.processes import ROOT, gunicorn_server

WORKERS_PER_INSTANCE = 3


@pytest.fixture(scope="module")
def instances(pgbouncer_url: str, cli_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    env = {**cli_env, "DATABASE_URL": pgbouncer_url}
    logs = tmp_path_factory.mktemp("pgbouncer-instances")
    with (
        gunicorn_server(env, workers=WORKERS_PER_INSTANCE, log_path=logs / "a.log") as a,
        gunicorn_server(env, workers=WORKERS_PER_INSTANCE, log_path=logs / "b.log") as b,
    ):
        yield [a, b]


@pytest.fixture(scope="module")
def nolock_instances(
    pgbouncer_url: str, cli_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    env = {**cli_env, "DATABASE_URL": pgbouncer_url}
    config, logs = ROOT / "tests" / "gunicorn_nolock.conf.py", tmp_path_factory.mktemp("pgbouncer-nolock")
    with (
        gunicorn_server(env, workers=2, config=config, log_path=logs / "a.log") as a,
        gunicorn_server(env, workers=2, config=config, log_path=logs / "b.log") as b,
    ):
        yield [a, b]


@pytest.mark.parametrize("direction", [(0, 1), (1, 0)], ids=["checkout-a-webhook-b", "checkout-b-webhook-a"])
@pytest.mark.gunicorn
def test_webhook_on_one_instance_waits_for_checkout_on_the_other(
    instances: list[str], standin: StripeStandIn, engine: Engine, direction: tuple[int, int]
) -> None:
    checkout_on, webhook_on = (instances[i] for i in direction)

    hook, purchase, webhook = webhook_before_checkout_ends(checkout_on, webhook_on, standin, engine)

    assert webhook.status_code == 200 and webhook.json()["outcome"] == "completed", webhook.text
    assert purchase_row(engine, purchase["purchase_id"])["status"] == "completed"
    # Seen in pg_locks while the webhook waited: one server connection held the purchase lock
    # for the checkout's worker, another waited for it for the webhook's worker.
    holders = [row for row in hook.lock_holders if row["granted"]]
    waiters = [row for row in hook.lock_holders if not row["granted"]]
    assert len(holders) == 1 and len(waiters) == 1, hook.lock_holders
    assert holders[0]["pid"] != waiters[0]["pid"]
    assert holders[0]["application_name"] != waiters[0]["application_name"], hook.lock_holders
    wait_ms = count(engine, "SELECT lock_wait_ms FROM stripe_events WHERE purchase_id = :p", p=purchase["purchase_id"])
    assert wait_ms > 0


@pytest.mark.gunicorn
def test_negative_control_across_instances_without_the_lock_the_sale_is_stuck(
    nolock_instances: list[str], standin: StripeStandIn, engine: Engine
) -> None:
    hook, purchase, webhook = webhook_before_checkout_ends(nolock_instances[0], nolock_instances[1], standin, engine)

    assert not hook.seen_waiting
    assert webhook.status_code >= 500 or webhook.json()["outcome"] != "completed", webhook.text
    assert purchase_row(engine, purchase["purchase_id"])["status"] == "pending"


class CrossDelivery:
    """before_create_response hook for the storm: pay each session and deliver its webhook to the
    instance that did NOT take the checkout, before Stripe answers (without waiting for it)."""

    def __init__(self, standin: StripeStandIn, instances: list[str]) -> None:
        self.standin, self.instances = standin, instances
        self.deliveries: list[Future[requests.Response]] = []

    def __call__(self, session: dict[str, Any]) -> None:
        other = self.instances[1 - int(session["metadata"]["user_id"].split("_")[1])]
        paid = self.standin.settle(session["id"])
        event = self.standin.event("checkout.session.completed", paid)
        self.deliveries.append(self.standin.deliver_async(event, url=other + "/webhooks/stripe"))


@pytest.mark.gunicorn
def test_a_storm_of_pairs_split_across_both_instances_completes_every_purchase_once(
    instances: list[str], standin: StripeStandIn, engine: Engine, pgbouncer_url: str
) -> None:
    pairs = 24
    cross = CrossDelivery(standin, instances)
    standin.faults.before_create_response = cross

    def buy(n: int) -> requests.Response:
        return Api(instances[n % 2]).checkout(user_id=f"storm_{n % 2}_{n}")

    with ThreadPoolExecutor(8) as pool:
        checkouts = list(pool.map(buy, range(pairs)))
    webhooks = [delivery.result(timeout=60) for delivery in cross.deliveries]

    assert [c.status_code for c in checkouts] == [201] * pairs, [c.text for c in checkouts if c.status_code != 201]
    assert [w.status_code for w in webhooks] == [200] * pairs, [w.text for w in webhooks if w.status_code != 200]
    assert sorted(w.json()["outcome"] for w in webhooks) == ["completed"] * pairs
    assert count(engine, "SELECT count(*) FROM purchases WHERE status = 'completed'") == pairs
    # One transition each: exactly one recorded event per purchase, and it completed it.
    assert count(engine, "SELECT count(DISTINCT purchase_id) FROM stripe_events WHERE outcome = 'completed'") == pairs
    assert count(engine, "SELECT count(*) FROM stripe_events") == pairs
    # The instances' client connections really shared PgBouncer's few server connections.
    pool_row = next(p for p in admin_console(pgbouncer_url, "SHOW POOLS") if p["database"] == _dbname(pgbouncer_url))
    assert pool_row["sv_active"] + pool_row["sv_idle"] + pool_row["sv_used"] + pool_row["sv_tested"] <= PGBOUNCER_POOL_SIZE
    clients = [c for c in admin_console(pgbouncer_url, "SHOW CLIENTS") if c["database"] == _dbname(pgbouncer_url)]
    assert len(clients) > PGBOUNCER_POOL_SIZE, clients


def _dbname(url: str) -> str:
    return str(make_url(url).database)


@pytest.mark.no_db
def test_pgbouncer_refuses_startup_options_and_paystore_sends_none(pgbouncer_url: str) -> None:
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter: options"):
        psycopg.connect(libpq_url(pgbouncer_url), options="-c timezone=UTC").close()
    engine = make_engine(pgbouncer_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT 1")) == 1
    finally:
        engine.dispose()


@pytest.mark.no_db
def test_migrations_run_through_pgbouncer_under_their_transaction_lock(server_url: str, pgbouncer_url: str) -> None:
    """Two concurrent `alembic upgrade head` through the pooler: one migrates, the other waits
    on the transaction-level migration lock and then finds the schema at head."""
    from tests.test_migrations import alembic, finish

    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    name = f"paystore_pgb_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        pooled = make_url(pgbouncer_url).set(database=name).render_as_string(hide_password=False)
        first, second = alembic(pooled, "upgrade", "head"), alembic(pooled, "upgrade", "head")
        results = [finish(first), finish(second)]
        assert [code for code, _ in results] == [0, 0], results
        assert sum(out.count("Running upgrade  -> 0001_initial") for _, out in results) == 1
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def _connect(url: str, *, autocommit: bool) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(url), autocommit=autocommit, prepare_threshold=None)


def _scalar(conn: psycopg.Connection[Any], sql: str, *params: Any) -> Any:
    row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def _lock_gone(engine: Engine, key: str) -> bool:
    return not advisory_lock_holders(engine, key)


@pytest.mark.no_db
def test_negative_control_a_session_advisory_lock_behind_pgbouncer_leaks_and_fails_to_exclude(
    database_url: str, engine: Engine
) -> None:
    """Why paystore uses only pg_advisory_xact_lock. Through a real PgBouncer (transaction mode,
    2 server connections), a session lock belongs to whichever server connection ran the
    statement, not to the client: another client is granted it, the owner cannot release it,
    and it outlives the owner."""
    key = f"purchase:complete:{uuid.uuid4()}"
    number = locks.advisory_key_number(key)
    with pgbouncer(database_url, pool_size=2) as url:
        owner = _connect(url, autocommit=True)
        owner_server = _scalar(owner, "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock(%s)) AS taken", number)
        # Two other clients, each inside a transaction, occupy both server connections.
        first, second = _connect(url, autocommit=False), _connect(url, autocommit=False)
        servers = {_scalar(first, "SELECT pg_backend_pid()"): first, _scalar(second, "SELECT pg_backend_pid()"): second}
        assert owner_server in servers, (owner_server, list(servers))
        on_owners_server = servers.pop(owner_server)
        (elsewhere,) = servers.values()

        # Fails to exclude: a different client is granted the lock the owner still holds.
        assert _scalar(on_owners_server, "SELECT pg_try_advisory_lock(%s)", number) is True
        assert _scalar(elsewhere, "SELECT pg_try_advisory_lock(%s)", number) is False
        # The owner cannot release it: its unlock runs on the other server connection.
        elsewhere.commit()
        assert _scalar(owner, "SELECT pg_advisory_unlock(%s)", number) is False
        on_owners_server.rollback()  # a rollback does not release session locks either
        for conn in (owner, on_owners_server, elsewhere):
            conn.close()

        # Leaks: every client has gone, and the lock is still held by PgBouncer's server connection.
        holders = advisory_lock_holders(engine, key)
        assert [(row["pid"], row["granted"]) for row in holders] == [(owner_server, True)], holders
    # Only closing the server connection (here: stopping PgBouncer) releases it.
    wait_until(lambda: _lock_gone(engine, key), timeout=30)


@pytest.mark.no_db
def test_the_transaction_lock_behind_pgbouncer_excludes_and_ends_with_its_transaction(
    database_url: str, engine: Engine
) -> None:
    """The same clients with pg_advisory_xact_lock: a transaction pins its server connection,
    so the lock excludes every other client and is gone at COMMIT."""
    key = f"purchase:complete:{uuid.uuid4()}"
    number = locks.advisory_key_number(key)
    with pgbouncer(database_url, pool_size=2) as url:
        owner, other = _connect(url, autocommit=False), _connect(url, autocommit=False)
        owner.execute("SELECT pg_advisory_xact_lock(%s)", [number])
        assert _scalar(other, "SELECT pg_try_advisory_xact_lock(%s)", number) is False
        owner.commit()
        assert _lock_gone(engine, key)
        assert _scalar(other, "SELECT pg_try_advisory_xact_lock(%s)", number) is True
        other.commit()
        assert _lock_gone(engine, key)
        owner.close()
        other.close()
