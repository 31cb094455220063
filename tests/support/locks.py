"""Watching PostgreSQL's lock table, and the hook that delivers a webhook before checkout ends.

Tests wait on `pg_locks` (an ungranted advisory lock) instead of sleeping: the webhook is seen
parked on the purchase's lock, or the test fails.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import requests
from sqlalchemy import Engine, text

from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.store import locks
from tests.support.api import Api


def _advisory_ids(key: str) -> tuple[int, int]:
    """pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits)."""
    unsigned = locks.advisory_key_number(key) & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def advisory_lock_holders(engine: Engine, key: str) -> list[dict[str, Any]]:
    """Backends holding or waiting for the advisory lock `key`, with their application_name."""
    classid, objid = _advisory_ids(key)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT l.pid, l.granted, a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.classid = :c AND l.objid = :o AND l.objsubid = 1 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"c": classid, "o": objid},
        )
        return [dict(r._mapping) for r in rows]


def someone_waits_for(engine: Engine, key: str) -> bool:
    return any(not row["granted"] for row in advisory_lock_holders(engine, key))


def any_lock_wait(engine: Engine) -> bool:
    """Some backend of this database waits for a lock (pg_locks is cluster-wide: a shared dev
    server's other databases must not count)."""
    with engine.connect() as conn:
        return bool(conn.scalar(text(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database()"
        )))


class WebhookFirst:
    """before_create_response hook: pay the session and deliver its webhook before answering."""

    def __init__(self, standin: StripeStandIn, engine: Engine, *, payment_status: str = "paid") -> None:
        self.standin, self.engine, self.payment_status = standin, engine, payment_status
        self.delivery: Future[requests.Response] | None = None
        self.seen_waiting = False
        self.lock_holders: list[dict[str, Any]] = []
        self.session_id: str | None = None

    def __call__(self, session: dict[str, Any]) -> None:
        self.session_id = session["id"]
        paid = self.standin.settle(session["id"], payment_status=self.payment_status)
        self.delivery = self.standin.deliver_async(self.standin.event("checkout.session.completed", paid))
        key = locks.purchase_lock_key(session["metadata"]["purchase_id"])
        # Parked on our lock (the fix), or parked on anything / already answered (no lock).
        wait_until(lambda: someone_waits_for(self.engine, key) or any_lock_wait(self.engine) or self.delivery.done())
        self.lock_holders = advisory_lock_holders(self.engine, key)
        self.seen_waiting = any(not row["granted"] for row in self.lock_holders)

    def webhook_answer(self) -> requests.Response:
        assert self.delivery is not None, "the stand-in never delivered the webhook"
        return self.delivery.result(timeout=30)


def webhook_before_checkout_ends(
    checkout_on: str, webhook_on: str, standin: StripeStandIn, engine: Engine
) -> tuple[WebhookFirst, Any, Any]:
    """A checkout at `checkout_on` whose paid webhook reaches `webhook_on` before the checkout
    commits: the hook, the checkout's purchase and the webhook's answer."""
    standin.webhook_url = webhook_on + "/webhooks/stripe"
    hook = WebhookFirst(standin, engine)
    standin.faults.before_create_response = hook
    checkout = Api(checkout_on).checkout()
    assert checkout.status_code == 201, checkout.text
    return hook, checkout.json(), hook.webhook_answer()
