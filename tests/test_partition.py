"""A checkout's host cut off from PostgreSQL while it holds the purchase lock.

Real hosts: PostgreSQL on this machine, a paystore (gunicorn) in a network namespace of its own
joined by a veth pair, the Stripe stand-in and a second paystore here. The checkout in the
namespace holds the lock while it waits on Stripe; then its host is cut off (iptables drops
everything in the namespace: a silent partition, as a failed switch makes). The server must end
that transaction within the bound paystore sets with the lock (its Stripe timeout plus a margin),
so that the webhook, served by the other paystore, gets the lock and completes the purchase; and
the cut-off request must end with an error in bounded time instead of hanging its thread.
The negative control serves the namespace's paystore without the bound: the lock outlives it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from paystore.db import make_engine
from paystore.devtools.credentials import STRIPE_KEY, TOKEN, WEBHOOK_SECRET
from paystore.devtools.postgres import reset_database
from paystore.devtools.processes import healthy, stop_process_group, wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.migrate import upgrade_to_head
from paystore.store import locks
from tests.support import pg_servers
from tests.support.locks import advisory_lock_holders, someone_waits_for
from tests.support.processes import ROOT

pytestmark = [pytest.mark.no_db, pytest.mark.gunicorn]
STRIPE_TIMEOUT_S = 3.0
BOUND_S = STRIPE_TIMEOUT_S + locks.IDLE_MARGIN_S  # what paystore promises (store/locks.py)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _cannot() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            return f"{tool} is missing (Debian iproute2, iptables: scripts/install-system-deps.sh)"
    probe = f"paystore-probe-{secrets.token_hex(2)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return pg_servers.available()


@dataclass
class Namespace:
    name: str
    host_ip: str  # this machine's end of the veth pair
    inside_ip: str

    def run(self, args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kwargs)

    def cut(self) -> None:
        """Drop every packet in and out of the namespace: its host is gone from the network."""
        for chain in ("INPUT", "OUTPUT"):
            subprocess.run(["ip", "netns", "exec", self.name, "iptables", "-I", chain, "-j", "DROP"], check=True,
                           capture_output=True, timeout=30)


@contextmanager
def namespace() -> Iterator[Namespace]:
    tag = secrets.token_hex(2)
    subnet = 64 + int(tag, 16) % 160
    ns = Namespace(f"paystore-{tag}", f"10.199.{subnet}.1", f"10.199.{subnet}.2")
    outside, inside = f"ps{tag}h", f"ps{tag}n"
    _ip("netns", "add", ns.name)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", ns.name)
        _ip("addr", "add", f"{ns.host_ip}/24", "dev", outside)
        _ip("link", "set", outside, "up")
        for args in (["addr", "add", f"{ns.inside_ip}/24", "dev", inside], ["link", "set", inside, "up"],
                     ["link", "set", "lo", "up"]):
            _ip("netns", "exec", ns.name, "ip", *args)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)
        subprocess.run(["ip", "link", "del", outside], capture_output=True)


@dataclass
class World:
    ns: Namespace
    engine: Engine
    standin: StripeStandIn
    webhook_app: str  # the other paystore, on this machine
    inside_url: str  # the namespace's paystore
    inside_log: Path


@contextmanager
def world(make_server_for: Callable[..., str], tmp: Path, config: Path) -> Iterator[World]:
    with pg_servers.scratch() as root, namespace() as ns:
        server = pg_servers.primary(root, ns.host_ip)
        try:
            upgrade_to_head(server.url)
            engine = make_engine(server.url, pool_size=2, max_overflow=2)
            reset_database(engine)
            standin = StripeStandIn(WEBHOOK_SECRET, host=ns.host_ip).start()
            webhook_app = make_server_for(database_url=server.url, stripe_api_base=standin.base_url, lock_timeout_ms=60_000)
            standin.webhook_url = webhook_app + "/webhooks/stripe"
            log = tmp / "inside.log"
            env = {**os.environ, "DATABASE_URL": server.url, "STRIPE_SECRET_KEY": STRIPE_KEY,
                   "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "STRIPE_API_BASE": standin.base_url,
                   "PAYSTORE_API_TOKENS": TOKEN, "PAYSTORE_STRIPE_TIMEOUT_S": str(STRIPE_TIMEOUT_S)}
            with open(log, "w") as out:
                gunicorn = ns.run([sys.executable, "-m", "gunicorn", "wsgi:app", "-b", f"{ns.inside_ip}:8000", "-w", "1",
                                   "-c", str(config)], cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True,
                                  text=True)
            inside_url = f"http://{ns.inside_ip}:8000"
            try:
                wait_until(lambda: healthy(inside_url) or gunicorn.poll() is not None, timeout=60, interval=0.2)
                assert gunicorn.poll() is None, log.read_text()[-3000:]
                yield World(ns, engine, standin, webhook_app, inside_url, log)
            finally:
                gunicorn.kill()  # its host is cut off: no graceful stop to wait for
                stop_process_group(gunicorn, grace_s=5)
                standin.stop()
                with engine.connect() as conn:  # a negative control's stranded backend
                    conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                         "WHERE application_name LIKE 'paystore:%%' AND pid <> pg_backend_pid()")
                engine.dispose()
        finally:
            server.stop("immediate")


def _checkout_held_then_cut(w: World) -> tuple[str, float]:
    """A checkout in the namespace, held at Stripe until its host is cut off; (purchase id, cut time)."""
    holding, cut = threading.Event(), threading.Event()
    created: dict[str, Any] = {}

    def hold(session: dict[str, Any]) -> None:
        created.update(session)
        holding.set()
        cut.wait(30)  # the answer then goes nowhere: the host is cut off

    w.standin.faults.before_create_response = hold
    threading.Thread(target=lambda: _quietly(requests.post, f"{w.inside_url}/checkout", timeout=60,
                                             headers={"Authorization": f"Bearer {TOKEN}"},
                                             json={"user_id": "user_cut", "program_id": "prog_py101"}),
                     daemon=True).start()
    assert holding.wait(30), w.inside_log.read_text()[-3000:]
    purchase_id = created["metadata"]["purchase_id"]
    assert advisory_lock_holders(w.engine, locks.purchase_lock_key(purchase_id)), "the checkout holds no lock"
    w.ns.cut()
    cut_at = time.monotonic()
    cut.set()
    w.standin.settle(created["id"])
    return purchase_id, cut_at


def _quietly(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except requests.RequestException:
        pass  # the answer cannot cross the cut


@pytest.fixture(scope="module", autouse=True)
def _can() -> None:
    if why := _cannot():
        pytest.skip(why)


def test_a_cut_off_lock_holder_frees_its_lock_within_the_bound_and_the_webhook_completes(
    make_server_for: Callable[..., str], tmp_path: Path
) -> None:
    with world(make_server_for, tmp_path, ROOT / "gunicorn.conf.py") as w:
        purchase_id, cut_at = _checkout_held_then_cut(w)
        key = locks.purchase_lock_key(purchase_id)
        session = next(iter(w.standin.sessions.values()))
        answer: list[requests.Response] = []
        webhook = threading.Thread(target=lambda: answer.append(
            w.standin.deliver(w.standin.event("checkout.session.completed", session))))
        webhook.start()
        wait_until(lambda: someone_waits_for(w.engine, key), timeout=30)  # parked behind the cut-off holder

        webhook.join(BOUND_S + 30)
        freed_after = time.monotonic() - cut_at

        assert answer and answer[0].status_code == 200, answer and answer[0].text
        assert answer[0].json()["outcome"] == "recovered"  # the checkout's row died with its transaction
        assert freed_after <= BOUND_S + 3, f"the lock lived {freed_after:.1f} s after the cut (bound {BOUND_S} s)"
        line = wait_until(lambda: _request_line(w.inside_log, "/checkout"), timeout=60, interval=0.5)
        assert line["status"] in (502, 503), line
        # Stripe's timeout, then a rollback nobody acknowledges, cut short by tcp_user_timeout.
        assert line["duration_ms"] < (STRIPE_TIMEOUT_S + 10 + 5) * 1000, line


def test_negative_control_without_the_idle_bound_the_lock_outlives_it(
    make_server_for: Callable[..., str], tmp_path: Path
) -> None:
    with world(make_server_for, tmp_path, ROOT / "tests" / "gunicorn_no_idle_bound.conf.py") as w:
        purchase_id, cut_at = _checkout_held_then_cut(w)
        key = locks.purchase_lock_key(purchase_id)

        time.sleep(max(0.0, BOUND_S + 5 - (time.monotonic() - cut_at)))  # past the bound: nothing to poll for

        assert any(h["granted"] for h in advisory_lock_holders(w.engine, key)), "the lock was freed anyway"


def _request_line(log: Path, route: str) -> dict[str, Any] | None:
    for raw in log.read_text().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("logger") == "paystore.request" and line.get("route") == route:
            return line
    return None
