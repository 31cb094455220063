"""Instructions per checkout + webhook pair in a gunicorn worker, counted by valgrind (callgrind).

CPU seconds move with the neighbours on a shared machine; instruction counts do not. Each app
is served by one gthread worker under callgrind and driven over one keep-alive connection, once
with a short warm-up only and once with `pairs` more pairs: the difference, divided by `pairs`,
is what one pair costs in that worker (user space only: kernel and PostgreSQL not included).
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import ROOT
from bench.load import paid_event
from paystore.devtools.credentials import TOKEN, WEBHOOK_SECRET
from paystore.devtools.http import free_port
from paystore.devtools.postgres import reset_database
from paystore.devtools.processes import healthy, wait_until
from paystore.devtools.standin import StripeStandIn, sign

WARM_UP = 20


def _worker_instructions(app: str, pairs: int, env: dict[str, str], scratch: Path) -> int:
    port = free_port()
    out = scratch / f"cg.{app.replace(':', '_')}.{pairs}"
    args = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", sys.executable, "-m", "gunicorn", app,
            "-w", "1", "-b", f"127.0.0.1:{port}", "-c", str(ROOT / "gunicorn.conf.py")]
    env = {**os.environ, **env, "GUNICORN_WORKER_CLASS": "gthread", "PAYSTORE_THREADS": "2", "GUNICORN_TIMEOUT": "600"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_until(lambda: healthy(f"http://127.0.0.1:{port}") or proc.poll() is not None, timeout=300, interval=0.5)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for n in range(WARM_UP + pairs):
            conn.request("POST", "/checkout", json.dumps({"user_id": f"i{pairs}_{n}", "program_id": "prog_py101"}),
                         {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            answer = conn.getresponse()
            purchase = json.loads(answer.read())
            body = json.dumps(paid_event(purchase)).encode()
            conn.request("POST", "/webhooks/stripe", body,
                         {"Content-Type": "application/json", "Stripe-Signature": sign(body, WEBHOOK_SECRET)})
            conn.getresponse().read()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=300)
    counts = [int(m.group(1)) for f in glob.glob(f"{out}.*")
              if (m := re.search(r"^(?:summary|totals): (\d+)", Path(f).read_text(), re.M))]
    return max(counts)  # the worker; the master does far less


def instructions_per_pair(database_url: str, engine, standin: StripeStandIn, env: dict[str, str],  # noqa: ANN001
                          apps: dict[str, str], pairs: int = 100) -> dict[str, float] | str:
    """Millions of instructions per pair in the worker, per app label; or why it could not run."""
    if shutil.which("valgrind") is None:
        return "valgrind not installed"
    standin.reset()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for label, app in apps.items():
            reset_database(engine)
            app_env = {**env, "DATABASE_URL": database_url}
            base = _worker_instructions(app, 0, app_env, Path(scratch))
            more = _worker_instructions(app, pairs, app_env, Path(scratch))
            results[label] = (more - base) / pairs / 1e6
    return results
