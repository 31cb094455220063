"""With DATABASE_URL unset, paystore serves from one embedded PostgreSQL shared by all workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from paystore.devtools.credentials import STRIPE_KEY, TOKEN, WEBHOOK_SECRET
from paystore.devtools.postgres import private_directory
from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from tests.support.api import Api
from tests.support.processes import ROOT, gunicorn_server

pytestmark = [pytest.mark.gunicorn, pytest.mark.no_db]


def _postmasters(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and "-D" in cmdline and str(data_dir) in cmdline:
            found.append(proc)
    return found


def test_workers_share_one_embedded_server_migrated_to_head(standin_server: StripeStandIn) -> None:
    # Not pytest's tmp_path: a second pytest run would narrow it under the server's feet.
    with private_directory("paystore-test-instance-") as tmp_path:
        _workers_share_one_embedded_server(tmp_path, standin_server)


def _workers_share_one_embedded_server(tmp_path: Path, standin_server: StripeStandIn) -> None:
    env = {
        "DATABASE_URL": "",
        "PAYSTORE_INSTANCE_PATH": str(tmp_path / "instance"),
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": standin_server.base_url,
        "PAYSTORE_API_TOKENS": TOKEN,
    }
    data_dir = (tmp_path / "instance" / "pgdata").resolve()
    with gunicorn_server(env, workers=3, log_path=tmp_path / "gunicorn.log") as url:
        assert len(_postmasters(data_dir)) == 1
        ready = [requests.get(url + "/readyz", timeout=5) for _ in range(12)]
        assert all(r.status_code == 200 for r in ready), [r.text for r in ready]
        assert Api(url).checkout(program_id="prog_demo").status_code == 404
        cli = subprocess.run(
            [str(Path(sys.executable).with_name("paystore")), "programs", "add", "prog_demo",
             "--name", "Demo", "--amount", "1500", "--currency", "usd"],
            cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        response = Api(url).checkout(program_id="prog_demo")
        assert response.status_code == 201, response.text
        assert (response.json()["amount"], response.json()["currency"]) == (1500, "usd")
        assert len(_postmasters(data_dir)) == 1
    # The last worker to exit stops the server.
    wait_until(lambda: not _postmasters(data_dir), timeout=30, interval=0.2)
