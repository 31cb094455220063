"""What an operator sees first: paystore's own commands, quiet output, plain error messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.support.processes import paystore_cli


@pytest.mark.no_db
def test_help_lists_paystore_commands_not_flasks(tmp_path: Path) -> None:
    # DATABASE_URL unset: --help must not need (or start) a database.
    result = paystore_cli({"DATABASE_URL": "", "PAYSTORE_INSTANCE_PATH": str(tmp_path)}, "--help")

    assert result.returncode == 0, result.stderr
    commands = set(re.findall(r"^  (\w+) ", result.stdout.split("Commands:")[1], re.MULTILINE))
    assert commands == {"db", "events", "notifications", "programs", "reconcile", "refunds", "report"}
    assert "--app" not in result.stdout and "--env-file" not in result.stdout
    assert "-v, --verbose" in result.stdout
    assert result.stderr == "" and not (tmp_path / "pgdata").exists()


@pytest.mark.no_db
def test_embedded_database_notice_and_alembic_lines_only_with_verbose(tmp_path: Path) -> None:
    def env(name: str) -> dict[str, str]:
        # One instance folder each: the first run's embedded server may still be stopping.
        return {"DATABASE_URL": "", "PAYSTORE_INSTANCE_PATH": str(tmp_path / name), "PAYSTORE_LOG_LEVEL": ""}

    quiet = paystore_cli(env("quiet"), "programs", "list")
    verbose = paystore_cli(env("verbose"), "-v", "programs", "list")

    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert quiet.stdout.startswith("ID") and quiet.stderr == ""
    assert "DATABASE_URL is unset: using the embedded PostgreSQL" in verbose.stderr
    assert "Running upgrade" in verbose.stderr and "alembic" in verbose.stderr


def test_reconcile_says_plainly_that_the_stripe_key_is_unset(cli_env: dict[str, str]) -> None:
    result = paystore_cli({**cli_env, "STRIPE_SECRET_KEY": ""}, "reconcile")

    assert result.returncode == 1
    assert "STRIPE_SECRET_KEY is unset" in result.stderr
    assert "APIConnectionError" not in result.stdout + result.stderr


def test_events_list_never_cuts_an_id(cli_env: dict[str, str], engine: Engine) -> None:
    intent = "pi_test_" + "7" * 40
    error = f"PurchaseNotYetKnown: no purchase for payment intent {intent} (it was never completed here)"
    assert 0 < error.index(intent) < 80 < error.index(intent) + len(intent), "the id must straddle the old cut"
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO stripe_events (stripe_event_id, type, payload, outcome, error) "
                 "VALUES ('evt_cut', 'charge.refunded', '{}', 'failed', :e)"),
            {"e": error},
        )

    result = paystore_cli(cli_env, "events", "list")

    header, *lines = result.stdout.splitlines()
    [line] = [line for line in lines if line.startswith("evt_cut")]
    shown = line[header.index("ERROR"):]
    assert shown.startswith("PurchaseNotYetKnown: no purchase")
    assert all(word in error.split() or word == "..." for word in shown.split()), f"a word was cut: {shown!r}"
