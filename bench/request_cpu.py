"""Thread CPU per request, by path, inside each gunicorn worker (`make bench BENCH_REQUEST_CPU=1`).

Why: the bench's CPU per pair (psutil, whole processes) says how much, not where. Served as
`bench.request_cpu:paystore` or `bench.request_cpu:bare`, an app is wrapped in a WSGI middleware
that adds up `time.thread_time()` per path, after the worker's first `WARM_UP` requests (imports,
pool connections), and writes its totals to `$BENCH_REQUEST_CPU_DIR/<pid>.json` when the worker
exits. Every configuration of a run gets the same wrapper (a few µs per request), so that its
columns stay comparable; thread CPU leaves out gunicorn's main loop and the kernel's work for
other threads, which the per-pair figures include.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

WARM_UP = 100
DIRECTORY_ENV = "BENCH_REQUEST_CPU_DIR"
WRAPPED = {"wsgi:app": "bench.request_cpu:paystore", "bench.bare:app": "bench.request_cpu:bare"}

_lock = threading.Lock()
_seen = 0
_totals: dict[str, list[float]] = {}  # path -> [thread CPU seconds, requests]


def _wrap(app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
    def measured(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        global _seen
        started = time.thread_time()
        try:
            return list(app(environ, start_response))  # the body is made in this thread too
        finally:
            spent = time.thread_time() - started
            with _lock:
                _seen += 1
                if _seen > WARM_UP:
                    total = _totals.setdefault(environ.get("PATH_INFO", ""), [0.0, 0])
                    total[0] += spent
                    total[1] += 1

    return measured


def _write_totals() -> None:
    directory = os.environ.get(DIRECTORY_ENV)
    if directory and _totals:
        (Path(directory) / f"{os.getpid()}.json").write_text(json.dumps(_totals))


Totals = dict[str, tuple[float, int]]  # path -> (thread CPU seconds, requests)


def added_up(parts: Iterable[Totals]) -> Totals:
    summed: Totals = {}
    for part in parts:
        for path, (cpu_s, n) in part.items():
            before = summed.get(path, (0.0, 0))
            summed[path] = (before[0] + cpu_s, before[1] + int(n))
    return summed


def read_totals(directory: Path) -> Totals:
    """The totals the workers wrote to `directory`, added up."""
    return added_up(json.loads(file.read_text()) for file in directory.glob("*.json"))


def __getattr__(name: str) -> Callable[..., list[bytes]]:
    # Imported by gunicorn in each worker: the wrapped app is built there, after the fork.
    if name == "paystore":
        import wsgi

        app = wsgi.app
    elif name == "bare":
        import bench.bare

        app = bench.bare.app
    else:
        raise AttributeError(name)
    atexit.register(_write_totals)
    return _wrap(app)
