"""Each process's share of the server's connections, read from the server at start, and the
checkout slots it leaves once the webhooks' headroom is kept."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from paystore.config import Settings, webhook_headroom
from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.factory import UNKNOWN_LIMIT_CONNECTIONS, connection_budget
from tests.support.database import count
from tests.support.processes import gunicorn_process
from tests.support.storm import storm_env


def _server_allows(engine: Engine) -> int:
    return count(engine, "SELECT current_setting('max_connections')::int"
                         " - current_setting('superuser_reserved_connections')::int"
                         " - coalesce(current_setting('reserved_connections', true)::int, 0)")


@pytest.mark.no_db
def test_a_process_takes_its_share_of_what_the_server_allows(database_url: str, engine: Engine) -> None:
    settings = Settings(db_processes=3, db_reserved=7, threads=1000)

    assert connection_budget(database_url, settings) == (_server_allows(engine) - 7) // 3


@pytest.mark.no_db
def test_the_share_is_at_most_a_connection_a_thread_and_an_explicit_setting_wins(database_url: str) -> None:
    assert connection_budget(database_url, Settings(threads=6)) == 6
    assert connection_budget(database_url, Settings(threads=128, db_connections=20)) == 20


@pytest.mark.no_db
def test_a_crowded_server_still_gives_each_process_two(database_url: str) -> None:
    assert connection_budget(database_url, Settings(db_processes=10_000, threads=128)) == 2


@pytest.mark.no_db
def test_a_database_down_at_start_gives_a_small_share_and_the_process_starts() -> None:
    gone = "postgresql://nobody@127.0.0.1:9/gone"

    assert connection_budget(gone, Settings(threads=128)) == UNKNOWN_LIMIT_CONNECTIONS


@pytest.mark.parametrize(("connections", "slots"), [(2, 1), (4, 2), (16, 14), (93, 82), (200, 175)])
def test_checkouts_get_the_connections_less_the_webhooks_headroom(connections: int, slots: int) -> None:
    assert Settings().checkout_limit(connections) == slots
    assert webhook_headroom(connections) >= 2
    assert Settings(checkout_slots=5).checkout_limit(connections) == 5  # set explicitly, it is what it says


# gunicorn: the worker count that divides the server's connections is the one it finally runs.
# The config file says 1 (GUNICORN_WORKERS); the command line or GUNICORN_CMD_ARGS say 3, and
# gunicorn applies them after the file. 30 connections are left for paystore (PAYSTORE_DB_RESERVED
# keeps the rest), so a worker sized for 3 processes holds 10, one sized for 1 would hold 24 (its
# threads).
OLD_CONFIG = """from paystore.gunicorn_conf import *  # noqa: F403
import os
os.environ.setdefault("PAYSTORE_DB_PROCESSES", str(workers))  # noqa: F405 - read from this file alone


def nworkers_changed(server, new_value, old_value):
    pass
"""


def _serving(log: Path) -> dict[int, dict[str, Any]]:
    """Each worker's start-up line (paystore/factory.py), by pid."""
    lines = {}
    for raw in log.read_text().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if str(line.get("message", "")).startswith("Serving with"):
            lines[line["pid"]] = line
    return lines


@pytest.mark.no_db
@pytest.mark.gunicorn
@pytest.mark.parametrize(("how", "processes", "connections"), [
    ("-w 3", 3, 10),
    ("GUNICORN_CMD_ARGS=--workers 3", 3, 10),
    ("-w 3, ops say 5 processes share the server", 5, 6),
    ("negative control: -w 3, the share taken from the config file's count", 1, 24),
])
def test_gunicorn_workers_take_their_share_for_the_worker_count_it_runs(
    database_url: str, engine: Engine, stripe: StripeStandIn, tmp_path: Path, how: str, processes: int,
    connections: int
) -> None:
    allows = _server_allows(engine)
    assert allows > 40, allows
    env = {**storm_env(database_url, stripe, 5), "GUNICORN_WORKERS": "1", "PAYSTORE_THREADS": "24",
           "PAYSTORE_DB_RESERVED": str(allows - 30)}
    workers: int | None = 3
    config = None
    if how.startswith("GUNICORN_CMD_ARGS"):
        env["GUNICORN_CMD_ARGS"], workers = "--workers 3", None
    if "ops say" in how:
        env["PAYSTORE_DB_PROCESSES"] = "5"
    if how.startswith("negative control"):
        config = tmp_path / "old.conf.py"
        config.write_text(OLD_CONFIG)
    log = tmp_path / "gunicorn.log"

    with gunicorn_process(env, workers=workers, config=config, log_path=log) as (_url, master):
        lines = wait_until(lambda: len(_serving(log)) == 3 and _serving(log), timeout=60, interval=0.2)
        if how == "-w 3":  # a reload re-reads the config file: the new workers still count 3
            os.kill(master.pid, signal.SIGHUP)
            lines = wait_until(lambda: len(_serving(log)) == 6 and _serving(log), timeout=60, interval=0.2)

    for line in lines.values():
        assert (line["db_processes"], line["db_connections"]) == (processes, connections), line
        assert line["checkout_slots"] == connections - webhook_headroom(connections), line
    if processes == 1:
        assert sum(line["db_connections"] for line in lines.values()) > 30  # oversubscribed: the anomaly
