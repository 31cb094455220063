"""A webhook whose handling raises is recorded as failed and answered 5xx; replay finishes it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from paystore.devtools.standin import StripeStandIn
from paystore.domain import lifecycle
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.processes import paystore_cli


def _raise_transient(*args: Any, **kwargs: Any) -> str:
    raise RuntimeError("transient")


@pytest.fixture
def failing_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("handler bug 42")

    monkeypatch.setattr(lifecycle, "apply", broken)


def _event_row(engine: Engine, event_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM stripe_events WHERE stripe_event_id = :e"), {"e": event_id}).one()._mapping)


def test_failing_handler_records_failed_and_answers_5xx(
    api: Api, standin: StripeStandIn, engine: Engine, failing_handler: None
) -> None:
    purchase = Purchase.checkout(api, standin, "user_1")
    event = purchase.event("completed_paid")

    first, second = standin.deliver(event), standin.deliver(event)

    assert (first.status_code, second.status_code) == (500, 500)
    row = _event_row(engine, event["id"])
    assert row["outcome"] == "failed" and row["error"] == "RuntimeError: handler bug 42"
    assert row["attempts"] == 2
    assert purchase_row(engine, purchase.purchase_id)["status"] == "pending"


@pytest.fixture
def failed_once(api: Api, standin: StripeStandIn, monkeypatch: pytest.MonkeyPatch) -> tuple[Purchase, dict]:
    """A completion whose first delivery hit a (since fixed) bug in the handler."""
    purchase = Purchase.checkout(api, standin, "user_1")
    event = purchase.event("completed_paid")
    with monkeypatch.context() as patch:
        patch.setattr(lifecycle, "apply", _raise_transient)
        assert standin.deliver(event).status_code == 500
    return purchase, event


def test_replay_finishes_a_failed_event_and_replaying_again_changes_nothing(
    failed_once: tuple[Purchase, dict], engine: Engine, cli_env: dict[str, str]
) -> None:
    purchase, event = failed_once

    listed = paystore_cli(cli_env, "events", "list", "--outcome", "failed")
    replayed = paystore_cli(cli_env, "events", "replay", event["id"])
    again = paystore_cli(cli_env, "events", "replay", event["id"])
    all_failed = paystore_cli(cli_env, "events", "replay", "--failed")

    assert event["id"] in listed.stdout and "RuntimeError: transient" in listed.stdout
    assert replayed.returncode == 0 and replayed.stdout.strip() == f"{event['id']}: completed", replayed.stderr
    assert again.returncode == 0 and again.stdout.strip() == f"{event['id']}: duplicate"
    assert all_failed.returncode == 0 and all_failed.stdout.strip() == ""
    row = _event_row(engine, event["id"])
    assert (row["outcome"], row["error"], row["attempts"]) == ("completed", None, 2)
    assert purchase_row(engine, purchase.purchase_id)["status"] == "completed"
    assert count(engine, "SELECT count(*) FROM stripe_events") == 1


def test_stripe_retry_also_finishes_a_failed_event(failed_once: tuple[Purchase, dict], standin: StripeStandIn) -> None:
    _, event = failed_once

    retried = standin.deliver(event)

    assert (retried.status_code, retried.json()["outcome"]) == (200, "completed")
    assert standin.deliver(event).json()["outcome"] == "duplicate"


def test_replay_of_unknown_event_fails_clearly(cli_env: dict[str, str]) -> None:
    result = paystore_cli(cli_env, "events", "replay", "evt_nope")
    assert result.returncode == 1 and "no recorded event evt_nope" in result.stderr
    usage = paystore_cli(cli_env, "events", "replay")
    assert usage.returncode == 2 and "EVENT_ID or --failed" in usage.stderr
