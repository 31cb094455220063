"""Stripe's rate limit is spent where it matters: the public return page reads a session at most
once at a time and not again for a few seconds, reads have a budget that checkouts' creates never
take from, and Stripe's own 429 is a 503 with Retry-After."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from paystore.config import Settings
from paystore.devtools.credentials import TOKEN
from paystore.devtools.standin import StripeStandIn
from paystore.stripe import budget
from tests.support.api import Api
from tests.support.database import count


def purchase_locks_taken() -> float:
    return REGISTRY.get_sample_value("paystore_lock_wait_seconds_count", {"kind": "unified"}) or 0.0


def reads_of(standin: StripeStandIn, session_id: str) -> int:
    return sum(1 for c in standin.state.api_calls if c["method"] == "GET" and c["path"].endswith(session_id))


def _hammer(base_url: str, session_id: str, hits: int) -> list[int]:
    url = f"{base_url}/checkout/return?session_id={session_id}"
    with ThreadPoolExecutor(32) as pool:
        return list(pool.map(lambda _: requests.get(url, allow_redirects=False, timeout=60).status_code, range(hits)))


@pytest.fixture(scope="module")
def busy_server(make_server_for: Callable[..., str]) -> str:
    """Threads enough for a crowd on one page beside checkouts; a read budget that never binds,
    so that what is measured is the sharing of reads alone."""
    return make_server_for(threads=40, stripe_reads_per_second=1000.0)


def test_200_hits_on_one_open_session_make_a_handful_of_stripe_reads_and_checkouts_go_on(
    busy_server: str, standin: StripeStandIn, engine: Engine
) -> None:
    standin.webhook_url = busy_server + "/webhooks/stripe"
    api = Api(busy_server)
    session_id = api.checkout("user_crowd").json()["stripe_session_id"]
    standin.faults.retrieve_delay_s = 0.3  # Stripe answers slowly: the hits pile up on one read
    before, locks_before = reads_of(standin, session_id), purchase_locks_taken()

    with ThreadPoolExecutor(2) as pool:
        crowd = pool.submit(_hammer, busy_server, session_id, 200)
        checkouts = [api.checkout(f"user_buyer_{i}").status_code for i in range(5)]
        statuses = crowd.result()

    assert set(statuses) == {200} and checkouts == [201] * 5
    assert reads_of(standin, session_id) - before <= 3, reads_of(standin, session_id) - before
    assert count(engine, "SELECT count(*) FROM purchases") == 6
    # The open session moved nothing on: the crowd took no purchase lock, only the 5 checkouts did.
    assert purchase_locks_taken() - locks_before == 5


def test_negative_control_without_shared_reads_every_hit_reads_stripe(
    busy_server: str, standin: StripeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget.SharedReads, "read", lambda self, key, fetch: fetch())
    standin.webhook_url = busy_server + "/webhooks/stripe"
    session_id = Api(busy_server).checkout("user_crowd_nc").json()["stripe_session_id"]

    _hammer(busy_server, session_id, 40)

    assert reads_of(standin, session_id) >= 30, "the crowd did not reach Stripe: the control shows nothing"


def test_reads_beyond_the_budget_answer_from_the_purchase_and_creates_never_wait(
    make_server_for: Callable[..., str], standin: StripeStandIn
) -> None:
    api = Api(make_server_for(stripe_reads_per_second=0.5))  # a burst of one read, then one every 2 s
    sessions = [api.checkout(f"user_budget_{i}").json()["stripe_session_id"] for i in range(6)]

    pages = [api.get(f"/checkout/return?session_id={s}", allow_redirects=False) for s in sessions]

    assert {p.status_code for p in pages} == {200} and all("pending" in p.text for p in pages)
    assert sum(reads_of(standin, s) for s in sessions) <= 2
    assert len(standin.state.create_calls) == 6


@pytest.mark.no_db
@pytest.mark.parametrize(("budget", "processes", "each"), [(10, 1, 10), (10, 2, 5), (100, 4, 25), (10, 40, 1), (0.5, 4, 0.5)])
def test_the_read_budget_is_shared_by_the_processes_each_taking_at_least_one_a_second(
    budget: float, processes: int, each: float
) -> None:
    settings = Settings(stripe_reads_per_second=budget, db_processes=processes)

    assert settings.stripe_reads_per_process() == each


def test_processes_sharing_the_budget_each_read_their_share_and_one_alone_reads_it_all(
    make_server_for: Callable[..., str], standin: StripeStandIn
) -> None:
    """4/s for 4 processes: this one reads 1/s (a burst of 2). The control is the same budget for
    one process, whose burst of 8 reads every page."""
    shared, alone = (Api(make_server_for(stripe_reads_per_second=4.0, db_processes=n)) for n in (4, 1))
    for api, tag in ((shared, "shared"), (alone, "alone")):
        sessions = [api.checkout(f"user_{tag}_{i}").json()["stripe_session_id"] for i in range(6)]
        pages = [api.get(f"/checkout/return?session_id={s}", allow_redirects=False) for s in sessions]
        assert {p.status_code for p in pages} == {200}
        reads = sum(reads_of(standin, s) for s in sessions)
        if api is shared:
            assert reads <= 3, f"{reads} reads: more than this process's share (burst 2, then 1/s)"
        else:
            assert reads == 6, f"{reads} reads: the whole budget should let every page read"


def test_stripes_429_is_a_503_with_retry_after_and_saves_nothing(
    api: Api, standin: StripeStandIn, engine: Engine, live_server: str
) -> None:
    standin.faults.create.append(429)

    answer = api.checkout("user_throttled")

    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "stripe_rate_limited")
    assert answer.headers["Retry-After"] == "1"
    assert count(engine, "SELECT count(*) FROM purchases") == 0
    metrics = requests.get(live_server + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    assert 'kind="rate_limited",operation="checkout.sessions.create"' in metrics
