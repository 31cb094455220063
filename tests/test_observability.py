"""Metrics and logs of a real gunicorn with several workers, run with recognizable fake secrets."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from paystore.devtools.postgres import reset_database
from paystore.devtools.standin import StripeStandIn
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count
from tests.support.processes import gunicorn_server, paystore_cli

# One module-wide run of traffic is measured by every test here, so the usual per-test wipe of
# the database is skipped (no_db) and done once, before the traffic.
pytestmark = [pytest.mark.gunicorn, pytest.mark.no_db]

MARK = "SECRETMARKER"
SECRETS = {
    "STRIPE_SECRET_KEY": f"sk_test_{MARK}_stripe_key",
    "STRIPE_WEBHOOK_SECRET": f"whsec_{MARK}_hook",
    "PAYSTORE_API_TOKENS": f"tok_{MARK}_api",
}
CHECKOUTS = 12
WORKERS = 3


@pytest.fixture(scope="module")
def observed(database_url: str, standin_server: StripeStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    log_path = tmp_path_factory.mktemp("logs") / "gunicorn.log"
    env = {"DATABASE_URL": database_url, "STRIPE_API_BASE": standin_server.base_url, **SECRETS,
           # A sync worker serves one request at a time, so parallel checkouts must spread over
           # the workers; one gthread worker may accept them all (the metrics are kept per
           # process the same way for every worker class).
           "GUNICORN_WORKER_CLASS": "sync",
           # A checkout may wait at the meeting below while a slower worker is still booting.
           "PAYSTORE_STRIPE_TIMEOUT_S": "60"}
    with gunicorn_server(env, workers=WORKERS, log_path=log_path) as url:
        yield {"url": url, "log_path": log_path, "env": env}


@pytest.fixture(scope="module")
def traffic(observed: dict, standin_server: StripeStandIn, engine: Engine) -> Iterator[dict[str, Any]]:
    """Checkouts in parallel (so several workers serve them), their webhooks, and some failures."""
    reset_database(engine)
    url, token, secret = observed["url"], SECRETS["PAYSTORE_API_TOKENS"], SECRETS["STRIPE_WEBHOOK_SECRET"]
    standin = standin_server
    standin.reset()
    standin.webhook_url = url + "/webhooks/stripe"
    api = Api(url, token=token)
    # The first WORKERS checkouts meet at Stripe: a sync worker holds one request at a time, so
    # they are in as many workers at once. (A delay alone let one worker serve them all while the
    # others were still importing the app on a busy CI machine.)
    arrivals = itertools.count()
    every_worker_holds_one = threading.Barrier(WORKERS, timeout=50)

    def meet_in_every_worker(session: dict[str, Any]) -> None:
        if next(arrivals) < WORKERS:
            every_worker_holds_one.wait()

    standin.faults.before_create_response = meet_in_every_worker
    with ThreadPoolExecutor(6) as pool:
        created = list(pool.map(lambda n: Purchase.checkout(api, standin, f"obs_{n}"), range(CHECKOUTS)))
    standin.faults.before_create_response = None
    for purchase in created:
        answer = standin.deliver(purchase.event("completed_paid"), secret=secret)
        assert answer.json()["outcome"] == "completed"
    standin.faults.create.append(500)
    failures = {
        "stripe_down": api.checkout("obs_unlucky").status_code,
        "wrong_token": Api(url, token="tok_wrong").checkout().status_code,
        "bad_signature": standin.deliver(created[0].event("refund_full")).status_code,  # another secret
    }
    # A session from the pre-paystore checkout (no metadata.purchase_id): the legacy lock.
    legacy = created[0].event("completed_paid")
    legacy["data"]["object"]["metadata"] = {}
    legacy_outcome = standin.deliver(legacy, secret=secret).json()["outcome"]
    traced = api.http.get(url + f"/purchases/{created[0].purchase_id}", headers={"X-Request-ID": "trace-abc-123"})
    yield {"api": api, "created": created, "failures": failures, "traced": traced, "legacy_outcome": legacy_outcome}
    standin.reset()


def _samples(metrics_text: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_every_worker(observed: dict, traffic: dict, engine: Engine) -> None:
    assert requests.get(observed["url"] + "/metrics", timeout=5).status_code == 401
    response = traffic["api"].get("/metrics")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    samples = _samples(response.text)

    assert samples[("paystore_checkout_total", (("outcome", "created"),))] == CHECKOUTS
    assert samples[("paystore_checkout_total", (("outcome", "stripe_unavailable"),))] == 1
    completed = (("outcome", "completed"), ("type", "checkout.session.completed"))
    assert samples[("paystore_webhook_events_total", completed)] == CHECKOUTS
    assert samples[("paystore_webhook_events_total", (("outcome", "invalid_webhook"), ("type", "unverified")))] == 1
    # checkout and webhook per purchase, the failed checkout (whose lock rolled back), and the
    # legacy event (which takes the purchase lock after its legacy lock)
    assert samples[("paystore_lock_wait_seconds_count", (("kind", "unified"),))] == 2 * CHECKOUTS + 2
    assert samples[("paystore_lock_wait_seconds_count", (("kind", "legacy"),))] == 1
    assert samples[("paystore_lock_wait_seconds_count", (("kind", "create"),))] == CHECKOUTS + 1
    assert samples[("paystore_stripe_request_seconds_count", (("operation", "checkout.sessions.create"),))] == CHECKOUTS + 1
    assert samples[("paystore_stripe_errors_total", (("kind", "server"), ("operation", "checkout.sessions.create")))] == 1
    by_status = count(engine, "SELECT count(*) FROM purchases WHERE status = 'completed'")
    assert samples[("paystore_purchases", (("status", "completed"),))] == by_status == CHECKOUTS
    served_by = {line["pid"] for line in _log_lines(observed) if line.get("route") == "/checkout"}
    assert len(served_by) == WORKERS, f"checkouts were served by {served_by}"


def _log_lines(observed: dict) -> list[dict]:
    return [json.loads(line) for line in Path(observed["log_path"]).read_text().splitlines() if line.strip()]


def test_logs_are_json_lines_without_secrets(observed: dict, traffic: dict) -> None:
    raw = Path(observed["log_path"]).read_text()
    lines = _log_lines(observed)  # raises if any line is not JSON

    assert MARK not in raw
    assert traffic["failures"] == {"stripe_down": 502, "wrong_token": 401, "bad_signature": 400}
    requests_logged = [line for line in lines if line["logger"] == "paystore.request"]
    assert requests_logged and all(
        {"request_id", "method", "route", "path", "status", "duration_ms", "pid"} <= set(line) for line in requests_logged
    )
    webhook_lines = [line for line in requests_logged if line["route"] == "/webhooks/stripe" and line["status"] == 200]
    assert all({"lock_key", "lock_wait_ms", "purchase_id", "stripe_event_id"} <= set(line) for line in webhook_lines)
    changes = [line for line in lines if line.get("status_to") == "completed"]
    assert len(changes) >= CHECKOUTS and all(line["purchase_id"] for line in changes)
    lock_lines = [line["message"] for line in lines if line["message"].startswith("Using unified lock: purchase:complete:")]
    assert len(lock_lines) >= CHECKOUTS and all(" ms)" in m for m in lock_lines)
    assert traffic["traced"].headers["X-Request-ID"] == "trace-abc-123"
    assert any(line.get("request_id") == "trace-abc-123" and line["status"] == 200 for line in requests_logged)


def test_report_locks_shows_the_rollout_numbers(observed: dict, traffic: dict) -> None:
    result = paystore_cli(observed["env"], "report", "locks", "--days", "30")

    assert result.returncode == 0, result.stderr
    assert traffic["legacy_outcome"] == "stale"
    rows = {
        cells[0]: cells for cells in map(str.split, result.stdout.splitlines()) if cells and cells[0] in ("unified", "legacy")
    }
    assert rows["unified"][1] == str(CHECKOUTS) and rows["legacy"][1] == "1"
    assert "uses of the legacy lock in the window: 1 (last ever: 20" in result.stdout
    assert "open purchases older than 0:15:00: 0" in result.stdout
    assert "events recorded as failed: 0" in result.stdout
