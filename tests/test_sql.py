"""paystore.store.sql runs hot statements on the transaction's raw psycopg connection: its errors must
still be SQLAlchemy's (the routes and services map those), and a connection the server dropped
must never be handed out again."""

from __future__ import annotations

import psycopg.errors
import pytest
from flask import Flask
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from paystore.devtools.processes import wait_until
from paystore.extension import Paystore
from paystore.store import sql


def test_a_refused_statement_raises_sqlalchemys_class_with_the_driver_error(live_app: Flask) -> None:
    factory = Paystore.of(live_app).session_factory
    duplicate = "INSERT INTO programs (id, name, amount, currency) VALUES ('prog_py101', 'again', 1, 'usd')"

    with factory() as db:
        with pytest.raises(IntegrityError) as caught, db.begin():
            sql.execute(db, duplicate)
        with db.begin():  # the failed transaction was rolled back; the session goes on
            assert sql.scalar(db, "SELECT count(*) FROM programs WHERE id = 'prog_py101'") == 1

    assert isinstance(caught.value.orig, psycopg.errors.UniqueViolation)
    assert caught.value.orig.diag.constraint_name == "pk_programs"


def test_a_connection_dropped_mid_transaction_is_invalidated_not_reused(live_app: Flask, engine: Engine) -> None:
    factory = Paystore.of(live_app).session_factory

    def backend_gone(pid: int) -> bool:
        with engine.connect() as conn:
            return not conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid})

    raised: list[OperationalError] = []
    with factory() as db:
        with pytest.raises(OperationalError), db.begin():
            pid = sql.scalar(db, "SELECT pg_backend_pid()")
            with engine.connect() as admin:
                assert admin.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            wait_until(lambda: backend_gone(pid))
            try:
                sql.execute(db, "SELECT 1")  # on the dead connection, inside the same transaction
            except OperationalError as exc:
                raised.append(exc)  # as sql.execute raised it (the rollback on the way out
                raise               # would also notice the dead connection, by itself)
        with db.begin():
            replacement = sql.scalar(db, "SELECT pg_backend_pid()")

    assert raised and raised[0].connection_invalidated, "sql.execute left the dropped connection valid"
    assert replacement != pid


def test_statements_share_one_cursor_per_connection_and_rows_outlive_it(live_app: Flask) -> None:
    factory = Paystore.of(live_app).session_factory

    with factory() as db:
        with db.begin():
            row = sql.first(db, "SELECT 1, 'one'")
            cursor = db.connection().connection.info[sql._CURSOR]
            sql.execute(db, "SELECT 2")
        with db.begin():  # the next transaction on the same pooled connection
            sql.scalar(db, "SELECT 3")
            assert db.connection().connection.info[sql._CURSOR] is cursor

    assert row == (1, "one"), "a later statement on the shared cursor changed a row already read"
