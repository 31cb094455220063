"""A checkout's host cut off from PostgreSQL while it holds the purchase lock.

Real hosts: PostgreSQL on this machine, a paystore (gunicorn) in a network namespace of its own
joined by a veth pair, the Stripe stand-in and a second paystore here. The checkout in the
namespace holds the lock while it waits on Stripe; then its host is cut off (iptables drops
everything in the namespace: a silent partition, as a failed switch makes). The server must end
that transaction within the bound paystore sets with the lock (its Stripe timeout plus a margin),
so that the webhook, served by the other paystore, gets the lock and completes the purchase; and
the cut-off request must end with an error in bounded time instead of hanging its thread.
The negative control serves the namespace's paystore without the bound: the lock outlives it.

The stand-in holds the create call's answer until the host is cut off, and the cut comes before
the lock is looked at, so that the checkout is still waiting on Stripe (holding its lock) when its
host goes, however slowly a loaded machine runs `iptables`: the Stripe timeout is long enough for
that, and the test fails loudly, rather than measuring something else, if the cut came after it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from paystore.db import make_engine
from paystore.devtools.credentials import STRIPE_KEY, TOKEN, WEBHOOK_SECRET
from paystore.devtools.postgres import reset_database
from paystore.devtools.processes import healthy, wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.migrate import upgrade_to_head
from paystore.store import locks
from tests.support import pg_servers
from tests.support.locks import advisory_lock_holders, someone_waits_for
from tests.support.processes import ROOT

pytestmark = [pytest.mark.no_db, pytest.mark.gunicorn]
# Long enough that the host is cut off while the checkout still waits on Stripe (the cut is two
# `ip netns exec iptables` runs); the bound below follows it.
STRIPE_TIMEOUT_S = 8.0
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
    """A namespace joined to this machine by a veth pair on a /30 of its own (one of 16384 in
    10.199.0.0/16, so that two runs at once rarely meet); both deleted afterwards, whatever
    happened."""
    tag = secrets.token_hex(2)
    base = (int(tag, 16) % 16384) * 4
    prefix = f"10.199.{base // 256}"
    ns = Namespace(f"paystore-{tag}", f"{prefix}.{base % 256 + 1}", f"{prefix}.{base % 256 + 2}")
    outside, inside = f"ps{tag}h", f"ps{tag}n"
    try:
        _ip("netns", "add", ns.name)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", ns.name)
        _ip("addr", "add", f"{ns.host_ip}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        for args in (["addr", "add", f"{ns.inside_ip}/30", "dev", inside], ["link", "set", inside, "up"],
                     ["link", "set", "lo", "up"]):
            _ip("netns", "exec", ns.name, "ip", *args)
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True)  # both ends of the pair
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)


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
    """Every piece is undone on the way out, in reverse order, even when the test (or a later
    piece's start) failed: gunicorn's whole process group, the stand-in, stranded backends, the
    server, the namespace and its veth pair."""
    with ExitStack() as undo:
        root = undo.enter_context(pg_servers.scratch())
        ns = undo.enter_context(namespace())
        server = pg_servers.primary(root, ns.host_ip)
        undo.callback(server.stop, "immediate")
        upgrade_to_head(server.url)
        engine = make_engine(server.url, pool_size=2, max_overflow=2)
        undo.callback(engine.dispose)
        undo.callback(_terminate_stranded, engine)  # a negative control's holder is still there
        reset_database(engine)
        standin = StripeStandIn(WEBHOOK_SECRET, host=ns.host_ip).start()
        undo.callback(standin.stop)
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
        undo.callback(_kill_group, gunicorn)  # its host is cut off: no graceful stop to wait for
        inside_url = f"http://{ns.inside_ip}:8000"
        wait_until(lambda: healthy(inside_url) or gunicorn.poll() is not None, timeout=60, interval=0.2)
        assert gunicorn.poll() is None, log.read_text()[-3000:]
        yield World(ns, engine, standin, webhook_app, inside_url, log)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the master and its workers (its own session), whether or not the master is gone."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _terminate_stranded(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name LIKE 'paystore:%%' AND pid <> pg_backend_pid()")


@dataclass
class Cut:
    purchase_id: str
    held_at: float  # the create call reached Stripe: the checkout's last statement was before it
    cut_at: float


def _checkout_held_then_cut(w: World) -> Cut:
    """A checkout in the namespace, its create answer held at Stripe until its host is cut off.
    The cut comes first, then the lock is looked at (from this machine, which the cut does not
    concern), then Stripe answers into the void."""
    holding, cut = threading.Event(), threading.Event()
    created: dict[str, Any] = {}

    def hold(session: dict[str, Any]) -> None:
        created.update(session)
        holding.set()
        cut.wait(60)  # the answer then goes nowhere: the host is cut off

    w.standin.faults.before_create_response = hold
    threading.Thread(target=lambda: _quietly(requests.post, f"{w.inside_url}/checkout", timeout=60,
                                             headers={"Authorization": f"Bearer {TOKEN}"},
                                             json={"user_id": "user_cut", "program_id": "prog_py101"}),
                     daemon=True).start()
    assert holding.wait(30), w.inside_log.read_text()[-3000:]
    held_at = time.monotonic()
    try:
        w.ns.cut()
        cut_at = time.monotonic()
    finally:
        cut.set()
    assert cut_at - held_at < STRIPE_TIMEOUT_S - 1, (
        f"the cut took {cut_at - held_at:.1f} s: the checkout may have given up on Stripe and rolled back "
        "before its host was cut off, so this run cannot show what happens to a cut-off holder")
    purchase_id = created["metadata"]["purchase_id"]
    assert advisory_lock_holders(w.engine, locks.purchase_lock_key(purchase_id)), "the checkout holds no lock"
    w.standin.settle(created["id"])
    return Cut(purchase_id, held_at, cut_at)


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
        cut = _checkout_held_then_cut(w)
        key = locks.purchase_lock_key(cut.purchase_id)
        session = next(iter(w.standin.sessions.values()))
        answer: list[requests.Response] = []
        webhook = threading.Thread(target=lambda: answer.append(
            w.standin.deliver(w.standin.event("checkout.session.completed", session))))
        webhook.start()
        wait_until(lambda: someone_waits_for(w.engine, key), timeout=30)  # parked behind the cut-off holder

        webhook.join(BOUND_S + 30)
        freed_after = time.monotonic() - cut.held_at

        assert answer and answer[0].status_code == 200, answer and answer[0].text
        assert answer[0].json()["outcome"] == "recovered"  # the checkout's row died with its transaction
        # The server counts the holder idle from its last statement, sent before the create call.
        assert freed_after <= BOUND_S + 3, f"the lock lived {freed_after:.1f} s after the checkout's last " \
                                           f"statement (bound {BOUND_S} s)"
        line = wait_until(lambda: _request_line(w.inside_log, "/checkout"), timeout=60, interval=0.5)
        assert line["status"] in (502, 503), line
        # Stripe's timeout, then a rollback nobody acknowledges, cut short by tcp_user_timeout.
        assert line["duration_ms"] < (STRIPE_TIMEOUT_S + 10 + 5) * 1000, line


def test_negative_control_without_the_idle_bound_the_lock_outlives_it(
    make_server_for: Callable[..., str], tmp_path: Path
) -> None:
    with world(make_server_for, tmp_path, ROOT / "tests" / "gunicorn_no_idle_bound.conf.py") as w:
        cut = _checkout_held_then_cut(w)
        key = locks.purchase_lock_key(cut.purchase_id)

        time.sleep(max(0.0, BOUND_S + 5 - (time.monotonic() - cut.held_at)))  # past the bound: nothing to poll for

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
