"""Mutual exclusion across processes: paystore under a real gunicorn with several workers."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from paystore.devtools.standin import StripeStandIn
from tests.support.database import count, purchase_row
from tests.support.locks import webhook_before_checkout_ends

pytestmark = pytest.mark.gunicorn


def test_webhook_in_one_worker_waits_for_checkout_in_another(
    gunicorn_url: str, standin: StripeStandIn, engine: Engine
) -> None:
    hook, purchase, webhook = webhook_before_checkout_ends(gunicorn_url, gunicorn_url, standin, engine)

    assert webhook.status_code == 200 and webhook.json()["outcome"] == "completed", webhook.text
    assert purchase_row(engine, purchase["purchase_id"])["status"] == "completed"
    # pg_locks, taken while the webhook waited: checkout's connection held the lock, another
    # connection waited for it. With threaded workers the two may be threads of one process or
    # of two (application_name carries the worker pid); the lock is the database's either way.
    holders = {row["pid"] for row in hook.lock_holders if row["granted"]}
    waiters = {row["pid"] for row in hook.lock_holders if not row["granted"]}
    assert len(holders) == 1 and len(waiters) == 1 and holders != waiters, hook.lock_holders
    assert all(row["application_name"].startswith("paystore:") for row in hook.lock_holders)
    wait_ms = count(engine, "SELECT lock_wait_ms FROM stripe_events WHERE purchase_id = :p", p=purchase["purchase_id"])
    assert wait_ms > 0


def test_negative_control_across_workers_without_the_lock_the_sale_is_stuck(
    gunicorn_nolock_url: str, standin: StripeStandIn, engine: Engine
) -> None:
    hook, purchase, webhook = webhook_before_checkout_ends(gunicorn_nolock_url, gunicorn_nolock_url, standin, engine)

    assert not hook.seen_waiting
    assert webhook.status_code >= 500 or webhook.json()["outcome"] != "completed", webhook.text
    assert purchase_row(engine, purchase["purchase_id"])["status"] == "pending"
