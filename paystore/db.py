"""Engine and sessions. Services open their own transactions (`with db.begin():`)."""

from __future__ import annotations

import os
import select
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from paystore.models import ProgramRow
from paystore.store.locks import IDLE_BOUND_INFO


def sqlalchemy_url(url: str) -> str:
    """Accept the usual `postgres://` / `postgresql://` URLs and pick the psycopg 3 driver.

    A libpq multi-host URL (`postgresql://u@db1:5432,db2:5432/shop?target_session_attrs=read-write`,
    what managed PostgreSQL and Patroni hand out) is accepted too: libpq then tries the hosts in
    turn and keeps the first that is writable, so after a failover new connections find the new
    primary without a restart. SQLAlchemy spells the hosts as repeated `host=` query parameters."""
    parsed = make_url(_hosts_as_query(url))
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername != "postgresql+psycopg":
        raise ValueError("DATABASE_URL must be a PostgreSQL URL")
    return parsed.render_as_string(hide_password=False)


def _hosts_as_query(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    user, at, hosts = authority.rpartition("@")
    if not sep or "," not in hosts:
        return url
    path, question, query = tail.partition("?")
    host_params = "&".join(f"host={quote(host, safe=':[]')}" for host in hosts.split(","))
    return f"{scheme}://{user}{at}/{path}?{host_params}" + (f"&{query}" if query else "")


# A host cut off from PostgreSQL must not hang a thread: a write nobody acknowledges fails after
# TCP_USER_TIMEOUT_MS, and an idle connection is probed every few seconds (keepalives) so that a
# read waiting on a dead peer fails too, instead of after the kernel's two hours.
TCP_USER_TIMEOUT_MS = 10_000
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5, idle_bound_ms: int | None = None) -> Engine:
    """`idle_bound_ms`: how long a lock-holding transaction may sit idle (paystore.store.locks)."""
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        # A request waits at most this long for a pooled connection, then fails with a 503.
        pool_timeout=10,
        # The most recently used connection first: a quiet spell keeps using the same few (warm
        # backends, fewer PgBouncer server connections), and the rest can be closed by idle
        # timeouts instead of being kept alive by a round robin over the whole pool.
        pool_use_lifo=True,
        connect_args={
            "connect_timeout": 5,
            # The pid tells which worker holds or waits for a lock (pg_stat_activity).
            "application_name": f"paystore:{os.getpid()}",
            # No startup `options` (PgBouncer refuses them) and no session SET (a transaction
            # pooler hands the next transaction another server): timestamps are made UTC by the
            # column type (paystore.models.UtcDateTime), whatever the session's TimeZone.
            # No server-side prepared statements: they break behind PgBouncer in transaction
            # pooling mode (before 1.21), where consecutive transactions may use other servers.
            "prepare_threshold": None,
            "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
            **_KEEPALIVES,
        },
    )
    if idle_bound_ms is not None:
        # Each connection carries its engine's bound, where the lock statement finds it.
        event.listen(engine, "connect", lambda _dbapi, record: record.info.__setitem__(IDLE_BOUND_INFO, idle_bound_ms))
    # Instead of pool_pre_ping (a SELECT 1 round trip on every checkout): a connection whose
    # server went away (restart, crash, idle kill) has its socket readable (EOF, or the
    # server's goodbye); an idle pooled connection has nothing to read. One poll, no round trip.
    event.listen(engine, "checkout", _discard_if_closed_by_server)
    return engine


def _discard_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    poller = select.poll()
    try:
        poller.register(dbapi_connection.fileno(), select.POLLIN)
        closed = bool(poller.poll(0))
    except Exception:  # noqa: BLE001 - psycopg raises if the socket is gone: unusable either way
        closed = True
    if closed:
        # As a failed pre-ping does: the pool discards this and every older connection (a
        # restarted server closed them all) and checks out a fresh one.
        raise exc.InvalidatePoolError("the server closed the pooled connection")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # autobegin=False: a query outside `with db.begin():` fails loudly instead of silently
    # opening a transaction that nobody commits.
    factory = sessionmaker(engine, autobegin=False, expire_on_commit=False)
    event.listen(factory, "before_flush", _refuse_writes_behind_the_store)
    return factory


# Every table but programs is written only by paystore.store's own statements: the purchase writer
# adds the shop's notification to every status change in the same statement, and refunds, events
# and customers are upserts an ORM flush would get wrong. Listed as what MAY be flushed, so that a
# table added later is guarded without anyone remembering to add it here.
_FLUSHABLE = (ProgramRow,)


class WriteBehindTheStore(RuntimeError):
    """Something tried to flush a row that only paystore.store writes."""


def _refuse_writes_behind_the_store(db: Session, _context: Any, _instances: Any) -> None:
    for obj in (*db.new, *db.dirty, *db.deleted):
        if not isinstance(obj, _FLUSHABLE):
            raise WriteBehindTheStore(
                f"{type(obj).__name__} is written by paystore.store only (purchases.write adds the outbox row)"
            )
