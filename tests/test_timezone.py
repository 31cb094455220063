"""paystore is right whatever the database's TimeZone, with no startup options and no SET.

Each case runs against a database of its own whose TimeZone is far from UTC: Pacific/Chatham
(+12:45/+13:45, with daylight saving) and `FOO-5:45`, a POSIX zone PostgreSQL accepts and
Python's zoneinfo does not know (psycopg then falls back to UTC with a warning). The API, the
CLI and the report must give UTC instants, the same ones the database holds.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from paystore import create_app
from paystore.db import make_engine, sqlalchemy_url
from paystore.devtools.credentials import STRIPE_KEY, TOKEN, WEBHOOK_SECRET
from paystore.devtools.postgres import reset_database
from paystore.devtools.standin import StripeStandIn
from paystore.extension import Paystore
from paystore.models import Base, PurchaseRow
from paystore.services.reports import lock_report
from tests.support.api import Api
from tests.support.processes import migrate_with_alembic, paystore_cli

pytestmark = pytest.mark.no_db

CHATHAM = "Pacific/Chatham"
UNKNOWN_TO_PYTHON = "FOO-5:45"


@pytest.fixture(scope="module", params=[CHATHAM, UNKNOWN_TO_PYTHON])
def zone_database(request: pytest.FixtureRequest, server_url: str) -> Iterator[tuple[str, str]]:
    """A migrated database whose TimeZone (ALTER DATABASE ... SET) is `zone`; yields (url, zone)."""
    zone = request.param
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    name = f"paystore_tz_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        conn.execute(text(f"ALTER DATABASE \"{name}\" SET timezone = '{zone}'"))
    url = make_url(sqlalchemy_url(server_url)).set(database=name).render_as_string(hide_password=False)
    try:
        migrate_with_alembic(url)
        yield url, zone
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def zone_engine(zone_database: tuple[str, str]) -> Iterator[Engine]:
    engine = make_engine(zone_database[0], pool_size=2, max_overflow=4)
    yield engine
    engine.dispose()


@pytest.fixture
def clean_zone(zone_engine: Engine) -> Engine:
    reset_database(zone_engine)
    return zone_engine


def _serve(database_url: str, standin: StripeStandIn) -> Iterator[str]:
    app = create_app({
        "database_url": database_url, "stripe_secret_key": STRIPE_KEY, "stripe_webhook_secrets": (WEBHOOK_SECRET,),
        "stripe_api_base": standin.base_url, "api_tokens": (TOKEN,), "threads": 8,
    })
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        Paystore.of(app).engine.dispose()


@pytest.fixture(scope="module")
def direct_app(zone_database: tuple[str, str], standin_server: StripeStandIn) -> Iterator[str]:
    yield from _serve(zone_database[0], standin_server)


def _through(pgbouncer_url: str, database_url: str) -> str:
    """The same database, reached through PgBouncer."""
    return make_url(pgbouncer_url).set(database=make_url(database_url).database).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def pooled_app(zone_database: tuple[str, str], pgbouncer_url: str, standin_server: StripeStandIn) -> Iterator[str]:
    yield from _serve(_through(pgbouncer_url, zone_database[0]), standin_server)


def _epoch(engine: Engine, column: str, purchase_id: str) -> float:
    with engine.connect() as conn:
        return float(conn.scalar(text(f"SELECT extract(epoch FROM {column}) FROM purchases WHERE id = :id"), {"id": purchase_id}))


def _utc(value: str) -> datetime:
    assert value.endswith("+00:00"), value
    return datetime.fromisoformat(value)


@pytest.mark.parametrize("route", ["direct", "pgbouncer"])
def test_api_timestamps_are_the_database_instants_in_utc(
    route: str, request: pytest.FixtureRequest, clean_zone: Engine, zone_database: tuple[str, str],
    standin_server: StripeStandIn,
) -> None:
    base_url = request.getfixturevalue("direct_app" if route == "direct" else "pooled_app")
    url = zone_database[0] if route == "direct" else _through(request.getfixturevalue("pgbouncer_url"), zone_database[0])
    probe = make_engine(url)
    with probe.connect() as conn:  # the sessions paystore opens really are in the far zone
        assert conn.scalar(text("SHOW TimeZone")) == zone_database[1]
    probe.dispose()
    api = Api(base_url)
    checkout = api.checkout()
    assert checkout.status_code == 201, checkout.text
    purchase_id = checkout.json()["purchase_id"]
    paid = standin_server.settle(checkout.json()["stripe_session_id"])
    answer = standin_server.deliver(standin_server.event("checkout.session.completed", paid), url=base_url + "/webhooks/stripe")
    assert answer.status_code == 200 and answer.json()["outcome"] == "completed", answer.text

    body = api.get(f"/purchases/{purchase_id}").json()

    assert _utc(body["created_at"]).timestamp() == pytest.approx(_epoch(clean_zone, "created_at", purchase_id), abs=1e-6)
    assert _utc(body["completed_at"]).timestamp() == pytest.approx(_epoch(clean_zone, "completed_at", purchase_id), abs=1e-6)
    assert api.get("/users/user_1/purchases").json()["purchases"][0]["created_at"] == body["created_at"]
    with clean_zone.connect() as conn:  # the shop's notification shows the same instants
        [told] = conn.scalars(text("SELECT body::jsonb FROM notifications WHERE purchase_id = :p"), {"p": purchase_id})
    assert told["data"]["purchase"] == body


def test_newest_first_across_the_daylight_saving_fall_back(
    direct_app: str, clean_zone: Engine, standin_server: StripeStandIn
) -> None:
    """Chatham leaves daylight saving at 2026-04-04 14:00 UTC (03:45 -> 02:45 local): the later
    purchase below has the earlier wall-clock time there."""
    api = Api(direct_app)
    earlier, later = (api.checkout(program_id=p).json()["purchase_id"] for p in ("prog_py101", "prog_rust"))
    with clean_zone.begin() as conn:
        for purchase_id, instant in ((earlier, "2026-04-04 13:40:00+00"), (later, "2026-04-04 14:10:00+00")):
            conn.execute(text("UPDATE purchases SET created_at = CAST(:t AS timestamptz) WHERE id = :id"),
                         {"t": instant, "id": purchase_id})

    listed = api.get("/users/user_1/purchases").json()["purchases"]

    assert [(p["purchase_id"], p["created_at"]) for p in listed] == [
        (later, "2026-04-04T14:10:00+00:00"),
        (earlier, "2026-04-04T13:40:00+00:00"),
    ]


def _days_across_one_chatham_transition() -> int:
    """A window length in days whose start and end have different Chatham UTC offsets."""
    zone, now = ZoneInfo(CHATHAM), datetime.now(UTC)

    def offset(at: datetime) -> timedelta | None:
        return at.astimezone(zone).utcoffset()

    return next(n for n in range(1, 400) if offset(now) != offset(now - timedelta(days=n)))


def _insert_at_window_edge(conn: Any, hours: int, *, minutes: int) -> None:
    """An event and a pending purchase `hours` hours (exact) minus `minutes` minutes ago."""
    at = "now() - make_interval(hours => :h) + make_interval(mins => :m)"
    params = {"h": hours, "m": minutes, "e": f"evt_{uuid.uuid4().hex}", "u": f"user_{uuid.uuid4().hex[:8]}"}
    conn.execute(text(f"""INSERT INTO stripe_events (stripe_event_id, type, livemode, payload, received_at, outcome,
                                                      lock_key, lock_wait_ms, attempts)
                          VALUES (:e, 'checkout.session.completed', false, '{{}}', {at}, 'completed',
                                  'purchase:complete:x', 1.0, 1)"""), params)
    conn.execute(text(f"""INSERT INTO purchases (id, user_id, program_id, status, amount, currency, livemode,
                                                 created_at, updated_at, payment, refunded_amount)
                          VALUES (gen_random_uuid(), :u, 'prog_py101', 'pending', 4900, 'usd', false, {at}, now(),
                                  'none', 0)"""), params)


def test_report_windows_are_exact_days_whatever_the_zone(
    clean_zone: Engine, zone_database: tuple[str, str], cli_env: dict[str, str]
) -> None:
    """`--days N` and `--stuck-after Nd` mean N x 24 h. Counted in calendar days of a zone whose
    offset changed inside the window, the edge would move by an hour: one of the two rows 30
    minutes either side of it would be misplaced."""
    days = _days_across_one_chatham_transition()
    with clean_zone.begin() as conn:
        _insert_at_window_edge(conn, days * 24, minutes=30)  # inside the window; not stuck
        _insert_at_window_edge(conn, days * 24, minutes=-30)  # outside the window; stuck

    with Session(clean_zone) as db:
        report = lock_report(db, days, timedelta(days=days))

    assert [(k.kind, k.events) for k in report.kinds] == [("unified", 1)]
    assert report.stuck_open == 1
    assert report.kinds[0].last_seen is not None and report.kinds[0].last_seen.tzinfo == UTC

    env = {**cli_env, "DATABASE_URL": zone_database[0]}
    out = paystore_cli(env, "report", "locks", "--days", str(days), "--stuck-after", f"{days}d")
    assert out.returncode == 0, out.stderr
    assert f"open purchases older than {timedelta(days=days)}: 1" in out.stdout
    unified = next(line for line in out.stdout.splitlines() if line.startswith("unified"))
    assert unified.split()[1] == "1" and unified.endswith("+00:00"), out.stdout
    listed = paystore_cli(env, "events", "list")
    assert listed.returncode == 0, listed.stderr
    assert all(line.split()[2].endswith("+00:00") for line in listed.stdout.splitlines()[1:]), listed.stdout


def test_naive_datetimes_are_refused_on_the_way_in(clean_zone: Engine) -> None:
    """PostgreSQL would read a naive datetime in the session's zone: a silent shift by the offset."""
    with Session(clean_zone) as db, pytest.raises(StatementError, match="naive datetime"):
        db.execute(select(PurchaseRow).where(PurchaseRow.created_at < datetime.now()))  # noqa: DTZ005 - the point


def test_the_schema_still_matches_the_models(zone_engine: Engine) -> None:
    with zone_engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
