"""The store's executor: plain SQL on the DBAPI connection of a Session's transaction.

Why not SQLAlchemy Core: a checkout + webhook pair runs about a dozen statements, and each one
through `Connection.execute(text(...))`, even with its compiled form cached, spends more CPU in
SQLAlchemy's execution context and result set-up than in psycopg (`python -m bench.statements`
prints both). Only the store may import this module (ruff's banned-api rule, TID251).

The statement runs on the same connection, inside the same transaction: the Session stays in
charge of BEGIN, COMMIT, ROLLBACK and the pool. What callers rely on of SQLAlchemy's error
handling is kept: a psycopg error is raised as the matching `sqlalchemy.exc` class
(OperationalError, IntegrityError, ...) with `.orig` set, and a connection the server dropped, or
left mid-statement by an exit (SystemExit, KeyboardInterrupt), is invalidated so that the pool
does not hand it out again. Unlike SQLAlchemy, a drop does not recycle the pool's other
connections at once: each is checked at its next checkout (paystore.db's socket poll, which then
recycles the pool). No engine SQL logging or `handle_error` hooks run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from sqlalchemy import exc
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

Params = Mapping[str, Any] | None


def column_value(value: Any) -> Any:
    """A column's value as a parameter: a StrEnum as its value (psycopg would write its name), and
    a naive datetime refused, as models.UtcDateTime refuses it (PostgreSQL would read it in the
    session's zone: a silent shift by the offset)."""
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, datetime) and value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
    return value


def execute(db: Session, statement: str, params: Params = None) -> None:
    _run(db.connection(), statement, params, None)


def first(db: Session, statement: str, params: Params = None) -> tuple[Any, ...] | None:
    """The first row, or None."""
    return _run(db.connection(), statement, params, "row")


def scalar(db: Session, statement: str, params: Params = None) -> Any:
    """The first column of the first row, or None."""
    row = _run(db.connection(), statement, params, "row")
    return None if row is None else row[0]


def rows(db: Session, statement: str, params: Params = None) -> list[tuple[Any, ...]]:
    """Every row."""
    return _run(db.connection(), statement, params, "all")


_CURSOR = "paystore.store.sql.cursor"


def _cursor(pooled: Any) -> psycopg.Cursor[Any]:
    """The one cursor this DBAPI connection's hot-path statements run on.

    Why one, kept with the connection (the pool's `info` lives and dies with it): a new psycopg
    cursor starts with empty adapter caches, so each statement on a fresh cursor looked up its
    parameter dumpers and column loaders again, 20 to 40 µs a statement, about a dozen
    statements a pair. A connection serves one thread at a time, and every caller
    here fetches what it needs before the next statement, so nothing reads a result that a
    later statement replaced.
    """
    dbapi_connection = pooled.dbapi_connection
    cursor = pooled.info.get(_CURSOR)
    if cursor is None or cursor.closed or cursor.connection is not dbapi_connection:
        cursor = pooled.info[_CURSOR] = dbapi_connection.cursor()
    return cursor


def _run(connection: Connection, statement: str, params: Params, fetch: str | None) -> Any:
    pooled = connection.connection
    dbapi_connection = pooled.dbapi_connection
    try:
        cursor = _cursor(pooled)
        cursor.execute(statement, params)
        if fetch is None:
            return None
        return cursor.fetchone() if fetch == "row" else cursor.fetchall()
    except psycopg.Error as error:
        dropped = connection.dialect.is_disconnect(error, dbapi_connection, None)
        if dropped:
            connection.invalidate(error)
        raise exc.DBAPIError.instance(
            statement, params, error, psycopg.Error,
            hide_parameters=connection.engine.hide_parameters, connection_invalidated=dropped,
            dialect=connection.dialect,
        ) from error
    except BaseException as interrupted:
        if not isinstance(interrupted, Exception):
            connection.invalidate()  # the server may still be sending a result nobody reads
        raise
