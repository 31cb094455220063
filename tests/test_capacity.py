"""Webhooks are never starved by checkouts waiting on Stripe (real gunicorn, gthread workers).

One worker process with 4 threads. The stand-in holds every session-create call until the test
releases it, so the blocked checkouts provably occupy their slots (their threads and
connections) for as long as the test needs: the blocked state is the clock, not a timer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.processes import gunicorn_server

pytestmark = pytest.mark.gunicorn

THREADS = 4


class HeldCreates:
    """before_create_response hook: every session-create call waits here until released."""

    def __init__(self) -> None:
        self.arrived = 0
        self._lock = threading.Lock()
        self._release = threading.Event()

    def __call__(self, session: dict[str, Any]) -> None:
        with self._lock:
            self.arrived += 1
        self._release.wait(60)

    @property
    def released(self) -> bool:
        return self._release.is_set()

    def release(self) -> None:
        self._release.set()


def _serve(cli_env: dict[str, str], tmp_path: Path, checkout_slots: int) -> Iterator[str]:
    env = {**cli_env, "GUNICORN_WORKER_CLASS": "gthread", "PAYSTORE_THREADS": str(THREADS),
           "PAYSTORE_CHECKOUT_SLOTS": str(checkout_slots),
           # The held create calls end when the test releases them, never by paystore's own
           # Stripe timeout (the cli_env's 5 s could free a thread inside the window on a busy host).
           "PAYSTORE_STRIPE_TIMEOUT_S": "120"}
    with gunicorn_server(env, workers=1, log_path=tmp_path / "gunicorn.log") as url:
        yield url


@pytest.fixture
def bounded_url(cli_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    yield from _serve(cli_env, tmp_path, checkout_slots=2)


@pytest.fixture
def unbounded_url(cli_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Admission effectively off: checkouts may take every thread."""
    yield from _serve(cli_env, tmp_path, checkout_slots=THREADS)


@pytest.fixture
def held(standin: StripeStandIn) -> Iterator[HeldCreates]:
    hook = HeldCreates()
    yield hook
    hook.release()


def _block_checkouts(url: str, standin: StripeStandIn, held: HeldCreates, n: int, pool: ThreadPoolExecutor) -> list[Future]:
    standin.faults.before_create_response = held
    futures = [pool.submit(Api(url).checkout, f"blocked_{i}") for i in range(n)]
    wait_until(lambda: held.arrived == n, timeout=60)  # each holds its slot, thread, connection and locks
    return futures


def test_checkouts_beyond_their_share_get_503_and_webhooks_are_answered_while_they_wait(
    bounded_url: str, standin: StripeStandIn, held: HeldCreates, engine: Engine
) -> None:
    api = Api(bounded_url)
    bought = Purchase.checkout(api, standin, "early_buyer")  # before Stripe slows down
    with ThreadPoolExecutor(4) as pool:
        blocked = _block_checkouts(bounded_url, standin, held, 2, pool)

        extra = api.checkout("one_too_many")
        webhook = standin.deliver(bought.event("completed_paid"), url=bounded_url + "/webhooks/stripe")
        health = requests.get(bounded_url + "/healthz", timeout=30)

        # All of this happened while both checkouts were still held inside Stripe's create call.
        assert held.arrived == 2 and not held.released and not any(f.done() for f in blocked)
        assert extra.status_code == 503 and extra.headers["Retry-After"] == "1", extra.text
        assert extra.json()["error"]["code"] == "overloaded"
        assert count(engine, "SELECT count(*) FROM purchases WHERE user_id = 'one_too_many'") == 0
        assert webhook.status_code == 200 and webhook.json()["outcome"] == "completed", webhook.text
        assert purchase_row(engine, bought.purchase_id)["status"] == "completed"  # committed
        assert health.status_code == 200
        held.release()
        assert [f.result(timeout=60).status_code for f in blocked] == [201, 201]
    assert held.arrived == 2  # the refused checkout never reached Stripe


def test_negative_control_without_the_share_a_webhook_waits_for_the_checkouts(
    unbounded_url: str, standin: StripeStandIn, held: HeldCreates, engine: Engine
) -> None:
    api = Api(unbounded_url)
    bought = Purchase.checkout(api, standin, "early_buyer")
    with ThreadPoolExecutor(THREADS + 1) as pool:
        blocked = _block_checkouts(unbounded_url, standin, held, THREADS, pool)  # every thread
        webhook = standin.deliver_async(bought.event("completed_paid"), url=unbounded_url + "/webhooks/stripe")

        # An observation window, not a speed limit: with a free thread the webhook is answered
        # while checkouts are held (the test above); here no thread is free, so nothing happens.
        done, _ = wait([webhook], timeout=3)
        assert not done and purchase_row(engine, bought.purchase_id)["status"] == "pending"
        assert not any(f.done() for f in blocked)

        held.release()
        answer = webhook.result(timeout=60)
        assert answer.status_code == 200 and answer.json()["outcome"] == "completed", answer.text
        assert all(f.result(timeout=60).status_code == 201 for f in blocked)
