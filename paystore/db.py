"""Engine and sessions. Services open their own transactions (`with db.begin():`)."""

from __future__ import annotations

import os

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from paystore.services import outbox


def sqlalchemy_url(url: str) -> str:
    """Accept the usual `postgres://` / `postgresql://` URLs and pick the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername != "postgresql+psycopg":
        raise ValueError("DATABASE_URL must be a PostgreSQL URL")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        # A request waits at most this long for a pooled connection, then fails with a 503.
        pool_timeout=10,
        connect_args={
            "connect_timeout": 5,
            # The pid tells which worker holds or waits for a lock (pg_stat_activity).
            "application_name": f"paystore:{os.getpid()}",
            # Timestamps are read and written in UTC whatever the server's TimeZone.
            "options": "-c timezone=UTC",
            # No server-side prepared statements: they break behind PgBouncer in transaction
            # pooling mode (before 1.21), where consecutive transactions may use other servers.
            "prepare_threshold": None,
        },
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # autobegin=False: a query outside `with db.begin():` fails loudly instead of silently
    # opening a transaction that nobody commits.
    factory = sessionmaker(engine, autobegin=False, expire_on_commit=False)
    # Why here: every session of the app comes from this factory, so every purchase status
    # change, whichever path makes it, writes the shop's notification in its own transaction.
    outbox.record_status_changes(factory)
    return factory
