"""Stopping the servers that tests, bench/ and the PgBouncer helper start in their own process
groups (gunicorn masters with their workers, PgBouncer)."""

from __future__ import annotations

import os
import signal
import subprocess


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
