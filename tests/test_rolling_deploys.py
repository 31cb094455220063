"""Rolling deploys in the middle of a storm of checkout and webhook pairs.

- `kill -HUP` of the gunicorn master: it starts new workers and stops the old ones gracefully,
  on the same listening socket.
- Two instances behind PgBouncer, and SIGTERM to one of them while it is in rotation: it stops
  taking connections and finishes what it holds; the load balancer sends what that instance
  refuses to the other one.

Stripe's create call takes a while (as it does), so checkouts are in flight, holding their
purchase locks, when the signal lands. The result asked for: no purchase lost, none doubled, and
no answer a client could not retry: a 502/503, or, from the instance going away, a connection
refused or reset before it was accepted (one a load balancer retries elsewhere or answers 502;
a checkout is safe to repeat, as a second one for the same buyer answers the open purchase).
A reload keeps the listening socket and refuses nothing at all.

Beside the storm, a few checkouts are sent to the instance about to go and held at Stripe (the
stand-in keeps their create answer) until the master has taken the SIGTERM: requests it had
accepted. Each of them must get its answer (201), not a reset.

The negative control is the same SIGTERM with a graceful timeout shorter than the Stripe call:
gunicorn then kills the workers with their checkouts in flight, and those very held checkouts get
no answer. Nothing is lost even then (the transaction never committed), which is why the rule is
stated where gunicorn is configured: a graceful timeout no shorter than the longest request.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from paystore.devtools.credentials import TOKEN
from paystore.devtools.processes import healthy, wait_until
from paystore.devtools.standin import StripeStandIn
from tests.support.api import Api
from tests.support.database import count
from tests.support.processes import gunicorn_process, worker_pids
from tests.support.storm import (
    NO_ANSWER,
    Answers,
    checkout_until_answered,
    deliver_until_2xx,
    each_bought_once,
    nothing_half_made,
    storm_env,
)

pytestmark = pytest.mark.gunicorn
PAIRS = 40
CREATE_S = 0.4  # Stripe's create call: long enough that checkouts are in flight at the signal
BUYERS = 8


def _answered_after(log: str, signal_name: str, pids: set[int] | None = None) -> list[str]:
    """Request lines a worker wrote after the master took the signal (by the workers in `pids`)."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    start = next(i for i, line in enumerate(lines) if line["message"] == f"Handling signal: {signal_name}")
    return [line["message"] for line in lines[start:]
            if line["logger"] == "paystore.request" and (pids is None or line["pid"] in pids)]


def _summary(answers: Answers) -> str:
    from collections import Counter
    return f"checkout {dict(Counter(answers.checkout))}, webhook {dict(Counter(answers.webhook))}"


class Storm:
    """PAIRS buyers, BUYERS at a time, each a checkout then its paid session's webhook; `signal`
    runs once a quarter of the pairs are done and while checkouts are in flight."""

    def __init__(self, standin: StripeStandIn, route: Callable[[], str], tag: str) -> None:
        self.standin, self.route, self.tag = standin, route, tag
        self.answers, self.done, self.buyers = Answers(), [], [f"{tag}_{n}" for n in range(PAIRS)]
        self.in_create = threading.Semaphore(0)

    def pair(self, user_id: str) -> None:
        purchase = checkout_until_answered(self.route, user_id, self.answers.checkout)
        event = self.standin.event("checkout.session.completed", self.standin.settle(purchase["stripe_session_id"]))
        deliver_until_2xx(self.standin, event, self.route, self.answers.webhook)
        self.done.append(purchase["purchase_id"])

    def run(self, signal_when_busy: Callable[[], None]) -> None:
        self.standin.faults.create_delay_s = CREATE_S

        def chaos() -> None:
            wait_until(lambda: len(self.done) >= PAIRS // 4, timeout=120, interval=0.02)
            signal_when_busy()

        with ThreadPoolExecutor(BUYERS + 1) as pool:
            chaotic = pool.submit(chaos)
            for future in [pool.submit(self.pair, buyer) for buyer in self.buyers]:
                future.result(timeout=300)
            chaotic.result(timeout=120)


def _in_flight(engine: Engine) -> int:
    """Checkouts holding their purchase lock right now (waiting on Stripe's create call)."""
    return count(engine, (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ))


def _hup(master: int, engine: Engine) -> Callable[[], None]:
    def signal_master() -> None:
        wait_until(lambda: _in_flight(engine) > 0, timeout=30, interval=0.005)
        os.kill(master, signal.SIGHUP)
    return signal_master


def test_hup_of_the_master_mid_storm_loses_nothing_and_refuses_nothing(
    stripe: StripeStandIn, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    env = storm_env(database_url, stripe, 5)
    with gunicorn_process(env, workers=2, log_path=tmp_path / "gunicorn.log") as (url, master):
        before = worker_pids(master)
        storm = Storm(stripe, lambda: url, "hup")
        storm.run(_hup(master.pid, engine))
        # The old workers are gone and new ones serve: the reload really happened mid-storm.
        wait_until(lambda: len(worker_pids(master)) == 2 and not worker_pids(master) & before, timeout=60)
        assert healthy(url)

    log = (tmp_path / "gunicorn.log").read_text()
    print(f"\nHUP mid-storm: {_summary(storm.answers)}")
    # The old workers answered checkouts they held when the signal came, then left.
    assert "POST /checkout 201" in _answered_after(log, "hup", before), log[-3000:]
    assert storm.answers.beyond_retryable() == [], storm.answers
    # Same socket, graceful workers: a reload refuses nobody.
    assert storm.answers.refused() == [], storm.answers
    each_bought_once(engine, storm.buyers)
    nothing_half_made(engine)


class Rotation:
    """A load balancer: round robin over the instances in rotation; an instance that refuses a
    connection leaves rotation (its health check would fail next), and the request goes on."""

    def __init__(self, urls: list[str]) -> None:
        self.urls, self._next, self._lock = list(urls), 0, threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            while len(self.urls) > 1:
                url = self.urls[self._next % len(self.urls)]
                self._next += 1
                if _accepts(url):
                    return url
                self.urls.remove(url)
            return self.urls[0]


def _accepts(url: str) -> bool:
    try:
        requests.get(url + "/healthz", timeout=2)
    except requests.ConnectionError:
        return False
    return True


HELD = 3


class Held:
    """HELD checkouts sent straight to one instance, their create answer kept at Stripe until
    `release()`: requests that instance has accepted and not yet answered."""

    def __init__(self, standin: StripeStandIn, url: str) -> None:
        self.buyers = [f"held_{n}" for n in range(HELD)]
        self.arrived, self.released = threading.Semaphore(0), threading.Event()
        self.answers: dict[str, int] = {}
        standin.faults.before_create_response = self._hold
        self._threads = [threading.Thread(target=self._checkout, args=(url, b), daemon=True) for b in self.buyers]
        for thread in self._threads:
            thread.start()

    def _hold(self, session: dict[str, Any]) -> None:
        if session["metadata"].get("user_id", "").startswith("held_"):
            self.arrived.release()
            self.released.wait(60)

    def _checkout(self, url: str, buyer: str) -> None:
        try:
            answer = requests.post(url + "/checkout", json={"user_id": buyer, "program_id": "prog_py101"},
                                   headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        except requests.ConnectionError:
            self.answers[buyer] = NO_ANSWER
        else:
            self.answers[buyer] = answer.status_code

    def all_at_stripe(self) -> None:
        for _ in self.buyers:
            assert self.arrived.acquire(timeout=30), "a held checkout never reached Stripe"

    def release(self) -> dict[str, int]:
        self.released.set()
        for thread in self._threads:
            thread.join(90)
        return self.answers


def _sigterm_one_of_two(
    stripe: StripeStandIn, pgbouncer_url: str, engine: Engine, tmp_path: Path, env_extra: dict[str, str]
) -> tuple[Storm, str, dict[str, int]]:
    env = {**storm_env(pgbouncer_url, stripe, 5), **env_extra}
    held: list[dict[str, int]] = []
    with (
        gunicorn_process(env, workers=2, log_path=tmp_path / "a.log") as (a, master_a),
        gunicorn_process(env, workers=2, log_path=tmp_path / "b.log") as (b, _),
    ):
        storm = Storm(stripe, Rotation([a, b]), "term")

        def terminate_a() -> None:
            wait_until(lambda: _in_flight(engine) > 0, timeout=30, interval=0.005)
            accepted = Held(stripe, a)
            accepted.all_at_stripe()
            os.kill(master_a.pid, signal.SIGTERM)
            wait_until(lambda: "Handling signal: term" in (tmp_path / "a.log").read_text(), timeout=30, interval=0.01)
            time.sleep(0.5)  # past a graceful timeout of 0: its workers would be gone by now
            held.append(accepted.release())

        storm.run(terminate_a)
        master_a.wait(timeout=120)
        assert Api(b).get("/readyz").status_code == 200
    return storm, (tmp_path / "a.log").read_text(), held[0]


def test_sigterm_of_one_instance_behind_pgbouncer_mid_storm_loses_nothing(
    stripe: StripeStandIn, pgbouncer_url: str, engine: Engine, tmp_path: Path
) -> None:
    storm, log_a, held = _sigterm_one_of_two(stripe, pgbouncer_url, engine, tmp_path, {})
    print(f"\nSIGTERM of one instance mid-storm: {_summary(storm.answers)}; held at Stripe across it: {held}")

    # The checkouts the instance had accepted when the signal came were answered, not reset.
    assert held == dict.fromkeys(held, 201) and len(held) == HELD, held
    assert count(engine, "SELECT count(*) FROM purchases WHERE user_id LIKE 'held_%'") == HELD

    assert "POST /checkout 201" in _answered_after(log_a, "term"), log_a[-3000:]
    assert storm.answers.beyond_retryable() == [], storm.answers
    # Checkouts in flight at the signal were finished, not cut: no buyer was left without an answer
    # by a request the instance had taken (a refused connection was retried at the other one).
    assert "Worker exiting" in log_a and "WORKER TIMEOUT" not in log_a, log_a[-3000:]
    each_bought_once(engine, storm.buyers)
    nothing_half_made(engine)


def test_negative_control_a_graceful_timeout_shorter_than_stripe_cuts_checkouts_off(
    stripe: StripeStandIn, pgbouncer_url: str, engine: Engine, tmp_path: Path
) -> None:
    """gunicorn kills workers whose requests outlive the graceful timeout: the buyers whose
    checkout was in flight get no answer (and click again)."""
    storm, log_a, held = _sigterm_one_of_two(stripe, pgbouncer_url, engine, tmp_path, {"GUNICORN_GRACEFUL_TIMEOUT": "0"})
    print(f"\nSIGTERM, graceful timeout 0: {_summary(storm.answers)}; held at Stripe across it: {held}")

    # The very checkouts the instance had accepted were cut off: no answer, and nothing committed.
    assert held == dict.fromkeys(held, NO_ANSWER) and len(held) == HELD, held
    assert count(engine, "SELECT count(*) FROM purchases WHERE user_id LIKE 'held_%'") == 0
    # Even so nothing is lost or doubled: the cut transactions never committed, and the buyers' retries bought once.
    each_bought_once(engine, storm.buyers)
    nothing_half_made(engine)
