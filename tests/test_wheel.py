"""paystore as a user installs it: the wheel built from this tree, installed with its dependencies
into a fresh virtual environment outside the repository, migrated, served by gunicorn, and
paid for, all from an empty directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paystore.devtools.credentials import STRIPE_KEY, TOKEN, WEBHOOK_SECRET
from paystore.devtools.http import free_port
from paystore.devtools.processes import healthy, stop_process_group, wait_until
from paystore.devtools.standin import StripeStandIn
from tests.support.api import Api
from tests.support.processes import ROOT

pytestmark = [pytest.mark.no_db, pytest.mark.gunicorn]


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    result = subprocess.run(args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (outside the repository) with the wheel of this tree and its dependencies."""
    scratch = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    source = scratch / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                 ".pytest_cache", ".ruff_cache", "instance"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(scratch), str(source)], scratch)
    [wheel] = scratch.glob("paystore-*.whl")
    venv = scratch / "venv"
    run([sys.executable, "-m", "venv", str(venv)], scratch)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], scratch)
    return venv


def test_the_installed_wheel_migrates_serves_and_completes_a_paid_checkout(
    installed: Path, fresh_database_url: str, standin_server: StripeStandIn, tmp_path: Path
) -> None:
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    bin_ = installed / "bin"
    env = {"DATABASE_URL": fresh_database_url, "STRIPE_SECRET_KEY": STRIPE_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "STRIPE_API_BASE": standin_server.base_url, "PAYSTORE_API_TOKENS": TOKEN, "PYTHONPATH": ""}
    where = run([str(bin_ / "python"), "-c", "import paystore, paystore.migrations; print(paystore.__file__)"], empty, env)
    assert Path(where.strip()).is_relative_to(installed), f"paystore imported from {where}, not from the wheel"
    # Its data files came along: the migration scripts as a package resource, the stand-in's objects.
    found = run([str(bin_ / "python"), "-c", "from paystore import migrate; import paystore.devtools.standin; "
                 "print(migrate.script_location(), migrate.head_revision())"], empty, env).split()
    assert found[0] == "paystore.migrations:" and found[1] != "None", found

    assert "database at" in run([str(bin_ / "paystore"), "db", "upgrade"], empty, env)
    run([str(bin_ / "paystore"), "programs", "add", "prog_py101", "--name", "Python 101", "--amount", "4900",
         "--currency", "usd"], empty, env)

    port = free_port()
    server = subprocess.Popen(
        [str(bin_ / "gunicorn"), "-c", "python:paystore.gunicorn_conf", "-b", f"127.0.0.1:{port}", "-w", "2",
         "paystore.wsgi:app"],
        cwd=empty, env={**os.environ, **env}, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    standin_server.reset()
    standin_server.webhook_url = base_url + "/webhooks/stripe"
    try:
        wait_until(lambda: healthy(base_url) or server.poll() is not None, timeout=60, interval=0.2)
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        api = Api(base_url)
        assert api.get("/readyz").status_code == 200

        checkout = api.checkout()
        assert checkout.status_code == 201, checkout.text
        session = standin_server.settle(checkout.json()["stripe_session_id"])
        answer = standin_server.deliver(standin_server.event("checkout.session.completed", session))

        assert (answer.status_code, answer.json()["outcome"]) == (200, "completed"), answer.text
        assert api.get(f"/purchases/{checkout.json()['purchase_id']}").json()["status"] == "completed"
    finally:
        stop_process_group(server)
        standin_server.reset()
