"""Reading rows back (the test programs and the clean-up between tests: paystore.devtools.postgres)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

# PgBouncer's server connections per database: fewer than the two gunicorn masters of
# test_pgbouncer hold client connections, so that PgBouncer must really share them.
PGBOUNCER_POOL_SIZE = 4


def purchase_row(engine: Engine, purchase_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM purchases WHERE id = :id"), {"id": purchase_id}).first()
        return dict(row._mapping) if row else None


def count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text(sql), params))
