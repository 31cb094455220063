"""Serving N gunicorn instances (masters) of paystore or the bare floor against one DATABASE_URL.

`serve_instances` is the one call the bench makes per configuration; serving two instances
behind PgBouncer is `serve_instances(..., database_url=<pgbouncer url>, instances=2)`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import ROOT
from paystore.devtools.http import free_port
from paystore.devtools.processes import healthy, stop_process_group, wait_until

PAYSTORE_APP = "wsgi:app"
BARE_APP = "bench.bare:app"


@dataclass(frozen=True)
class ServerModel:
    """How gunicorn runs an app: its worker class, processes and threads (= pool) per process."""

    worker_class: str
    workers: int
    threads: int

    def env(self) -> dict[str, str]:
        return {"GUNICORN_WORKER_CLASS": self.worker_class, "GUNICORN_WORKERS": str(self.workers),
                "PAYSTORE_THREADS": str(self.threads)}

    def __str__(self) -> str:
        if self.worker_class == "sync":
            return f"sync x{self.workers}"
        return f"{self.worker_class} {self.workers}x{self.threads}"


@dataclass
class Instance:
    url: str
    master: psutil.Process

    def workers(self) -> list[psutil.Process]:
        return self.master.children(recursive=True)


@contextmanager
def _one_instance(app: str, env: Mapping[str, str], log_path: Path) -> Iterator[Instance]:
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", app, "-b", f"127.0.0.1:{port}", "-c", str(ROOT / "gunicorn.conf.py")]
    with open(log_path, "a") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, start_new_session=True, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url) or proc.poll() is not None, timeout=60, interval=0.1)
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn {app} exited during start-up; see {log_path}")
        yield Instance(url, psutil.Process(proc.pid))
    finally:
        stop_process_group(proc)


@contextmanager
def serve_instances(
    app: str, database_url: str, env: Mapping[str, str], model: ServerModel, log_path: Path, instances: int = 1
) -> Iterator[list[Instance]]:
    """Start `instances` gunicorn masters of `app` on `database_url`; yield them once healthy."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(_one_instance(app, {**env, **model.env(), "DATABASE_URL": database_url}, log_path))
            for _ in range(instances)
        ]
