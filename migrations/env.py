"""Alembic environment: online migrations only, serialized by their own advisory lock.

Two deploys (or several gunicorn workers starting the embedded default) may run
`alembic upgrade head` at the same moment. All migrations run in one transaction that first
takes the `paystore:migrate` advisory transaction lock, so the second runner waits, then finds
the schema at head and does nothing. Both waits are bounded: the migration lock by
PAYSTORE_MIGRATION_LOCK_TIMEOUT_MS (default 60 s), and each DDL statement's table locks by
PAYSTORE_MIGRATION_DDL_LOCK_TIMEOUT_MS (default 5 s) so that a migration queued behind a long
transaction cannot stall all traffic on that table.

Nothing here outlives that transaction (the lock and both timeouts are transaction-scoped, no
session SET, no startup options), so `alembic upgrade head` may run through PgBouncer in
transaction pooling mode as well as directly against PostgreSQL.
"""

import logging
import os

from alembic import context
from sqlalchemy import TypeDecorator, create_engine, pool, text

from paystore.db import sqlalchemy_url
from paystore.models import Base
from paystore.store.locks import MIGRATION_KEY, advisory_key_number

config = context.config
target_metadata = Base.metadata
log = logging.getLogger("alembic.env")

if config.cmd_opts is not None and not logging.getLogger().handlers:  # the `alembic` CLI
    logging.basicConfig(level=logging.INFO, format="%(levelname)s [%(name)s] %(message)s")


def _database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("DATABASE_URL is not set: tell Alembic which database to migrate")
    return sqlalchemy_url(url)


def _timeout_ms(name: str, default: int) -> str:
    return f"{int(os.environ.get(name) or default)}ms"


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Autogenerate writes the column type's database form (UtcDateTime -> DateTime(timezone=True)),
    so that migrations never import paystore's Python-side types."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def run_migrations_online() -> None:
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_item=_render_item)
        with context.begin_transaction():
            connection.execute(
                text("SELECT set_config('lock_timeout', :t, true)"),
                {"t": _timeout_ms("PAYSTORE_MIGRATION_LOCK_TIMEOUT_MS", 60_000)},
            )
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key_number(MIGRATION_KEY)}
            )
            log.info("Holding migration lock %s", MIGRATION_KEY)
            connection.execute(
                text("SELECT set_config('lock_timeout', :t, true)"),
                {"t": _timeout_ms("PAYSTORE_MIGRATION_DDL_LOCK_TIMEOUT_MS", 5_000)},
            )
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: they would skip the lock")
run_migrations_online()
