"""A paid session whose checkout rolled back is recovered, never dropped."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import Engine, text

from paystore.devtools.standin import StripeStandIn
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.processes import paystore_cli


def _checkout_that_times_out_after_stripe_created_the_session(api: Api, standin: StripeStandIn) -> dict:
    standin.faults.create_delay_s = 2.5  # longer than paystore's Stripe timeout (2 s): Stripe did create it
    response = api.checkout()
    standin.faults.create_delay_s = 0
    assert response.status_code == 502
    [session] = standin.sessions.values()
    return session


def test_paid_session_of_rolled_back_checkout_is_recovered_as_completed(
    api: Api, standin: StripeStandIn, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    session = _checkout_that_times_out_after_stripe_created_the_session(api, standin)
    purchase_id = session["metadata"]["purchase_id"]
    assert purchase_row(engine, purchase_id) is None
    caplog.set_level(logging.WARNING, logger="paystore")

    answer = standin.deliver(standin.event("checkout.session.completed", standin.settle(session["id"])))

    assert answer.status_code == 200 and answer.json()["outcome"] == "recovered"
    row = purchase_row(engine, purchase_id)
    assert row["status"] == "completed"
    assert (row["user_id"], row["program_id"], row["amount"], row["currency"]) == ("user_1", "prog_py101", 4900, "usd")
    assert row["stripe_session_id"] == session["id"]
    assert any(r.levelno == logging.WARNING and "Recovered purchase" in r.getMessage() for r in caplog.records)
    # Recovered means active: the user does not get to buy it twice.
    assert api.checkout().status_code == 409


def test_recovery_next_to_a_newer_open_checkout_needs_review(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    session = _checkout_that_times_out_after_stripe_created_the_session(api, standin)
    retried = api.checkout()
    assert retried.status_code == 201

    answer = standin.deliver(standin.event("checkout.session.completed", standin.settle(session["id"])))

    assert answer.status_code == 200 and answer.json()["outcome"] == "needs_review"
    row = purchase_row(engine, session["metadata"]["purchase_id"])
    assert row["status"] == "needs_review" and retried.json()["purchase_id"] in row["review_reason"]
    assert purchase_row(engine, retried.json()["purchase_id"])["status"] == "pending"


def test_expired_session_of_rolled_back_checkout_is_ignored(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    session = _checkout_that_times_out_after_stripe_created_the_session(api, standin)

    expired = standin.settle(session["id"], status="expired", payment_status="unpaid")
    answer = standin.deliver(standin.event("checkout.session.expired", expired))

    assert answer.status_code == 200 and answer.json()["outcome"] == "ignored"
    assert count(engine, "SELECT count(*) FROM purchases") == 0


def test_session_naming_an_unknown_program_fails_loudly_and_replays_once_fixed(
    api: Api, standin: StripeStandIn, engine: Engine, cli_env: dict[str, str]
) -> None:
    session = _checkout_that_times_out_after_stripe_created_the_session(api, standin)
    paid = standin.settle(session["id"])
    paid["metadata"]["program_id"] = "prog_new"
    event = standin.event("checkout.session.completed", paid)

    answer = standin.deliver(event)

    assert answer.status_code == 500 and answer.json()["error"]["code"] == "purchase_unrecoverable"
    assert count(engine, "SELECT count(*) FROM stripe_events WHERE outcome = 'failed'") == 1
    # The operator adds the missing program; the replay recovers the paid purchase.
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO programs (id, name, amount, currency) VALUES ('prog_new', 'New', 4900, 'usd')"))
    replayed = paystore_cli(cli_env, "events", "replay", "--failed")
    assert replayed.returncode == 0 and replayed.stdout.strip() == f"{event['id']}: recovered", replayed.stderr
    assert purchase_row(engine, session["metadata"]["purchase_id"])["status"] == "completed"


def test_recovered_session_paying_another_price_needs_review(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    session = _checkout_that_times_out_after_stripe_created_the_session(api, standin)
    paid = standin.settle(session["id"])
    paid["amount_total"] = 100

    answer = standin.deliver(standin.event("checkout.session.completed", paid))

    assert answer.status_code == 200 and answer.json()["outcome"] == "needs_review"
    row = purchase_row(engine, session["metadata"]["purchase_id"])
    assert row["status"] == "needs_review" and "program costs 4900 usd" in row["review_reason"]
    assert row["completed_at"] is None
