"""What the PostgreSQL server allows: the connection budget paystore's processes share."""

from __future__ import annotations

from sqlalchemy import Connection, text

_LIMITS = text(
    "SELECT current_setting('max_connections')::int,"
    " current_setting('superuser_reserved_connections')::int"
    " + coalesce(current_setting('reserved_connections', true)::int, 0)"
)


def connection_limit(conn: Connection) -> int:
    """Connections an ordinary role may open on this server: max_connections less the reserved ones."""
    total, reserved = conn.execute(_LIMITS).one()
    return int(total) - int(reserved)
