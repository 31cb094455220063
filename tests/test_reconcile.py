"""`paystore reconcile`: repairs what a lost webhook left behind, safely and idempotently."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, text

from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.extension import Paystore
from paystore.services.purchasing.reconcile import reconcile
from paystore.store import locks
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.locks import advisory_lock_holders
from tests.support.negative_controls import remove_the_lock_and_meet_before_applying
from tests.support.processes import paystore_cli


def _age(engine: Engine, *purchase_ids: str, minutes: int = 60) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE purchases SET created_at = now() - make_interval(mins => :m) WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"m": minutes, "ids": list(purchase_ids)},
        )


@pytest.fixture
def three_lost_webhooks(api: Api, standin: StripeStandIn, engine: Engine) -> dict[str, str]:
    """Purchases whose sessions Stripe paid, expired or still holds open; no webhook came."""
    ids = {}
    for name, settle in (("paid", {"status": "complete", "payment_status": "paid"}),
                         ("expired", {"status": "expired", "payment_status": "unpaid"}),
                         ("open", None)):
        body = api.checkout(f"user_{name}").json()
        if settle:
            standin.settle(body["stripe_session_id"], **settle)
        ids[name] = body["purchase_id"]
    _age(engine, *ids.values())
    return ids


def test_reconcile_repairs_paid_and_expired_leaves_open_and_is_idempotent(
    three_lost_webhooks: dict[str, str], engine: Engine, cli_env: dict[str, str]
) -> None:
    first = paystore_cli(cli_env, "reconcile", "--older-than", "15m")

    assert first.returncode == 3, first.stdout + first.stderr
    assert purchase_row(engine, three_lost_webhooks["paid"])["status"] == "completed"
    assert purchase_row(engine, three_lost_webhooks["expired"])["status"] == "expired"
    assert purchase_row(engine, three_lost_webhooks["open"])["status"] == "pending"
    lines = {line.split()[0]: line for line in first.stdout.splitlines()[1:] if line[:1].isalnum()}
    assert "repair: completed" in lines[three_lost_webhooks["paid"]]
    assert "repair: expired" in lines[three_lost_webhooks["expired"]]
    assert "left open" in lines[three_lost_webhooks["open"]]
    assert "repaired 2, errors 0" in first.stdout

    second = paystore_cli(cli_env, "reconcile", "--older-than", "15m")

    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 open purchases older than 0:15:00: repaired 0, errors 0" in second.stdout


def test_dry_run_changes_nothing(three_lost_webhooks: dict[str, str], engine: Engine, cli_env: dict[str, str]) -> None:
    result = paystore_cli(cli_env, "reconcile", "--dry-run")

    assert result.returncode == 3 and "would repair 2" in result.stdout
    assert {purchase_row(engine, pid)["status"] for pid in three_lost_webhooks.values()} == {"pending"}
    assert count(engine, "SELECT count(*) FROM notifications") == 0


def test_young_purchases_are_left_to_their_webhooks(api: Api, standin: StripeStandIn, cli_env: dict[str, str]) -> None:
    body = api.checkout().json()
    standin.settle(body["stripe_session_id"])

    result = paystore_cli(cli_env, "reconcile", "--older-than", "15m")

    assert result.returncode == 0 and "0 open purchases" in result.stdout


def test_a_stripe_error_on_one_purchase_does_not_stop_the_others(
    three_lost_webhooks: dict[str, str], standin: StripeStandIn, engine: Engine, cli_env: dict[str, str]
) -> None:
    paid_session = purchase_row(engine, three_lost_webhooks["paid"])["stripe_session_id"]
    standin.faults.retrieve[paid_session] = 500

    result = paystore_cli(cli_env, "reconcile")

    assert result.returncode == 1
    assert "error: Stripe answered with a server error" in result.stdout
    assert purchase_row(engine, three_lost_webhooks["paid"])["status"] == "pending"
    assert purchase_row(engine, three_lost_webhooks["expired"])["status"] == "expired"


@pytest.mark.parametrize(
    ("later", "status", "stripe_says"),
    [
        ({"payment_status": "paid"}, "completed", "complete/paid"),
        ({"payment_status": "unpaid", "intent_status": "requires_payment_method"}, "failed",
         "complete/unpaid (requires_payment_method)"),
        ({"payment_status": "unpaid", "intent_status": "processing"}, "awaiting_payment", "complete/unpaid (processing)"),
    ],
)
def test_delayed_payment_whose_outcome_webhook_was_lost(
    api: Api, standin: StripeStandIn, engine: Engine, cli_env: dict[str, str], later: dict, status: str, stripe_says: str
) -> None:
    """The session stays complete/unpaid when a delayed payment fails: the payment intent tells."""
    created = api.checkout("delayed").json()
    standin_session, purchase_id = created["stripe_session_id"], created["purchase_id"]
    session = standin.settle(standin_session, payment_status="unpaid")
    assert standin.deliver(standin.event("checkout.session.completed", session)).json()["outcome"] == "awaiting_payment"
    standin.settle(standin_session, **later)
    _age(engine, purchase_id, minutes=60 * 24 * 3)

    result = paystore_cli(cli_env, "reconcile")

    assert result.returncode == (0 if status == "awaiting_payment" else 3), result.stdout
    assert stripe_says in result.stdout
    assert purchase_row(engine, purchase_id)["status"] == status


def _race_reconcile_and_webhook(
    live_app: Flask, standin: StripeStandIn, engine: Engine, purchase: Purchase
) -> tuple[list[Any], str]:
    """Reconcile and the webhook for one paid purchase, started while the test holds the lock."""
    ext = Paystore.of(live_app)
    rows: list[Any] = []

    def run_reconcile() -> None:
        with ext.session_factory() as db:
            rows.extend(reconcile(db, ext.gateway, ext.settings, timedelta(minutes=15)))

    key = locks.purchase_lock_key(purchase.purchase_id)
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": locks.advisory_key_number(key)})
        worker = threading.Thread(target=run_reconcile)
        worker.start()
        webhook = standin.deliver_async(purchase.event("completed_paid"))

        def both_parked_or_both_done() -> bool:
            waiting = [row for row in advisory_lock_holders(engine, key) if not row["granted"]]
            return len(waiting) == 2 or (webhook.done() and not worker.is_alive())

        wait_until(both_parked_or_both_done)
        holder.rollback()
    worker.join(timeout=30)
    return rows, webhook.result(timeout=30).json()["outcome"]


def test_reconcile_racing_the_webhook_makes_exactly_one_transition(
    live_app: Flask, api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    purchase = Purchase.checkout(api, standin, "racer")
    standin.settle(purchase.session["id"])
    _age(engine, purchase.purchase_id)

    rows, webhook_outcome = _race_reconcile_and_webhook(live_app, standin, engine, purchase)

    [row] = rows
    transitions = [row.action == "repair: completed", webhook_outcome == "completed"]
    assert transitions.count(True) == 1, (row, webhook_outcome)
    assert {row.action, webhook_outcome} <= {"repair: completed", "unchanged", "completed", "stale"}
    assert purchase_row(engine, purchase.purchase_id)["status"] == "completed"


def test_negative_control_without_the_lock_both_claim_the_transition(
    live_app: Flask, api: Api, standin: StripeStandIn, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    purchase = Purchase.checkout(api, standin, "racer")
    standin.settle(purchase.session["id"])
    _age(engine, purchase.purchase_id)
    remove_the_lock_and_meet_before_applying(monkeypatch, parties=2)

    rows, webhook_outcome = _race_reconcile_and_webhook(live_app, standin, engine, purchase)

    assert rows[0].action == "repair: completed" and webhook_outcome == "completed", "no double transition observed"
