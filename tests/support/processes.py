"""paystore as ops run it, in subprocesses: gunicorn and the `paystore` CLI from the repository
root; and paystore apps served in this process, for tests that also call services directly."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import make_server

from paystore.devtools.http import free_port
from paystore.devtools.processes import healthy, stop_process_group, wait_until
from paystore.extension import Paystore

ROOT = Path(__file__).resolve().parent.parent.parent


def migrate_with_alembic(database_url: str) -> None:
    """`alembic upgrade head` from the repository root, as ops run it."""
    alembic = Path(sys.executable).with_name("alembic")
    command = [str(alembic)] if alembic.exists() else [sys.executable, "-m", "alembic"]
    result = subprocess.run(
        [*command, "upgrade", "head"], cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr


@contextmanager
def gunicorn_server(
    env: Mapping[str, str], workers: int = 3, config: Path | None = None, log_path: Path | None = None
) -> Iterator[str]:
    """Run `gunicorn wsgi:app` from the repository root with several workers (gunicorn.conf.py's
    worker class unless `env` sets GUNICORN_WORKER_CLASS)."""
    with gunicorn_process(env, workers, config, log_path) as (base_url, _master):
        yield base_url


@contextmanager
def gunicorn_process(
    env: Mapping[str, str], workers: int | None = 3, config: Path | None = None, log_path: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """gunicorn_server, for tests that signal the master: its base URL and the master process.
    `workers=None` passes no `-w`: the count then comes from the config file or GUNICORN_CMD_ARGS."""
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "wsgi:app", "-b", f"127.0.0.1:{port}"]
    args += ["-w", str(workers)] if workers is not None else []
    args += ["-c", str(config or ROOT / "gunicorn.conf.py")]
    log_file = open(log_path, "w") if log_path else None  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **env}, start_new_session=True, stdout=log_file, stderr=log_file
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(base_url) or proc.poll() is not None, timeout=60, interval=0.1)
        if proc.poll() is not None:
            tail = Path(log_path).read_text()[-4000:] if log_path else "(see stderr)"
            raise AssertionError(f"gunicorn exited during start-up:\n{tail}")
        yield base_url, proc
    finally:
        stop_process_group(proc)
        if log_file:
            log_file.close()


def worker_pids(master: subprocess.Popen[bytes]) -> set[int]:
    """The master's live worker processes, from /proc (Linux)."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def paystore_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `paystore` console script, as ops would."""
    exe = Path(sys.executable).with_name("paystore")
    return subprocess.run(
        [str(exe), *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


class LocalServers:
    """paystore apps served over real HTTP by threads of this process, each with its own settings."""

    def __init__(self, make_app: Any) -> None:
        self._make_app = make_app
        self._started: list[tuple[Any, Flask]] = []
        self._apps: dict[str, Flask] = {}

    def serve(self, **overrides: Any) -> str:
        """Build an app with these settings, serve it, and answer its base URL."""
        app = self._make_app(**overrides)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._started.append((server, app))
        url = f"http://127.0.0.1:{server.server_port}"
        self._apps[url] = app
        return url

    def app_at(self, url: str) -> Flask:
        return self._apps[url]

    def close(self) -> None:
        for server, app in self._started:
            server.shutdown()
            Paystore.of(app).engine.dispose()
