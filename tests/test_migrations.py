"""Migrations: the only way the schema is made, serialized by their own bounded advisory lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from paystore.devtools.processes import wait_until
from paystore.migrate import head_revision
from paystore.models import Base
from paystore.store.locks import MIGRATION_KEY, advisory_key_number
from tests.support.locks import someone_waits_for
from tests.support.processes import ROOT

pytestmark = pytest.mark.no_db


def alembic(database_url: str, *args: str, **env: str) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("alembic")
    return subprocess.Popen(
        [str(exe), *args], cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def test_upgrade_head_builds_the_schema_the_models_describe(fresh_database_url: str) -> None:
    assert finish(alembic(fresh_database_url, "upgrade", "head"))[0] == 0
    engine = create_engine(fresh_database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_revision() == head_revision()
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_downgrade_to_base_and_back(fresh_database_url: str) -> None:
    assert finish(alembic(fresh_database_url, "upgrade", "head"))[0] == 0
    assert finish(alembic(fresh_database_url, "downgrade", "base"))[0] == 0
    code, out = finish(alembic(fresh_database_url, "upgrade", "head"))
    assert code == 0, out


def test_a_second_migration_waits_for_the_migration_lock(fresh_database_url: str) -> None:
    engine = create_engine(fresh_database_url)
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key_number(MIGRATION_KEY)})
        proc = alembic(fresh_database_url, "upgrade", "head")
        wait_until(lambda: someone_waits_for(engine, MIGRATION_KEY), timeout=30)
        assert proc.poll() is None, "alembic did not wait for the migration lock"
        holder.rollback()
    code, out = finish(proc)
    assert code == 0, out
    assert "Holding migration lock paystore:migrate" in out
    engine.dispose()


def test_the_migration_lock_wait_is_bounded(fresh_database_url: str) -> None:
    engine = create_engine(fresh_database_url)
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key_number(MIGRATION_KEY)})
        code, out = finish(alembic(fresh_database_url, "upgrade", "head", PAYSTORE_MIGRATION_LOCK_TIMEOUT_MS="300"))
        holder.rollback()
    assert code != 0 and "lock timeout" in out
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT to_regclass('purchases')")) is None
    engine.dispose()


def test_concurrent_upgrades_both_succeed_and_migrate_once(fresh_database_url: str) -> None:
    first, second = alembic(fresh_database_url, "upgrade", "head"), alembic(fresh_database_url, "upgrade", "head")
    results = [finish(first), finish(second)]
    assert [code for code, _ in results] == [0, 0], results
    ran = sum(out.count("Running upgrade  -> 0001_initial") for _, out in results)
    assert ran == 1


def test_purchases_refunded_before_refund_rows_carry_their_refunded_amount(fresh_database_url: str) -> None:
    """0005 carries what the charge reported into reported_refunded_amount for purchases refunded
    before refunds were kept one by one, and leaves purchases with refund rows alone."""
    assert finish(alembic(fresh_database_url, "upgrade", "0004_refunds"))[0] == 0
    engine = create_engine(fresh_database_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO programs (id, name, amount, currency) VALUES ('prog_m', 'M', 4900, 'usd')"))
        for user, refunded in (("old", 1000), ("kept", 2000), ("none", 0)):
            conn.execute(text(
                "INSERT INTO purchases (id, user_id, program_id, status, amount, currency, refunded_amount)"
                " VALUES (gen_random_uuid(), :u, 'prog_m', 'completed', 4900, 'usd', :r)"), {"u": user, "r": refunded})
        conn.execute(text("INSERT INTO refunds (id, purchase_id, amount, status)"
                          " SELECT 're_kept', id, 2000, 'succeeded' FROM purchases WHERE user_id = 'kept'"))

    assert finish(alembic(fresh_database_url, "upgrade", "head"))[0] == 0

    with engine.connect() as conn:
        carried = dict(conn.execute(text("SELECT user_id, reported_refunded_amount FROM purchases")).all())
    assert carried == {"old": 1000, "kept": 0, "none": 0}
    engine.dispose()
