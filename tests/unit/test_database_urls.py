"""DATABASE_URL as ops write it: one host, or libpq's several (for failover)."""

from __future__ import annotations

import pytest

from paystore.db import make_engine, sqlalchemy_url


def _libpq_params(url: str) -> dict[str, object]:
    engine = make_engine(url)
    try:
        return engine.dialect.create_connect_args(engine.url)[1]
    finally:
        engine.dispose()


def test_a_multi_host_url_reaches_libpq_as_its_host_and_port_lists() -> None:
    params = _libpq_params("postgresql://shop:s3cret@db1:5432,db2:5433/paystore?target_session_attrs=read-write")

    assert (params["host"], params["port"]) == ("db1,db2", "5432,5433")
    assert params["target_session_attrs"] == "read-write"
    assert (params["user"], params["password"], params["dbname"]) == ("shop", "s3cret", "paystore")


def test_a_host_without_a_port_in_a_multi_host_url_gets_the_default_port() -> None:
    params = _libpq_params("postgres://shop@db1,db2:6432/paystore")

    assert (params["host"], params["port"]) == ("db1,db2", ",6432")  # libpq: an empty entry is 5432


def test_a_single_host_url_is_unchanged_but_for_the_driver() -> None:
    url = "postgresql://shop@db1:5432/paystore?sslmode=require"
    assert sqlalchemy_url(url) == url.replace("postgresql://", "postgresql+psycopg://")


def test_sqlalchemy_s_own_spelling_of_several_hosts_is_accepted_as_it_is() -> None:
    params = _libpq_params("postgresql+psycopg://shop@/paystore?host=db1:5432&host=db2:5433")

    assert (params["host"], params["port"]) == ("db1,db2", "5432,5433")


def test_a_url_of_another_database_is_refused() -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        sqlalchemy_url("mysql://shop@db1,db2/paystore")
