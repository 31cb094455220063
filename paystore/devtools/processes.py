"""Watching and stopping the servers that tests, bench/ and the PgBouncer helper start in their own
process groups (gunicorn masters with their workers, PgBouncer)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import requests


def stop_process_group(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the group (gunicorn then lets workers finish their requests: commit or roll back),
    and SIGKILL it only if it has not exited within `grace_s`."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.005) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def healthy(base_url: str) -> bool:
    """paystore (or the bare floor) at `base_url` answers its liveness probe."""
    try:
        return requests.get(base_url + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False
