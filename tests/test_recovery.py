"""A paid session whose checkout rolled back is recovered, never dropped."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from paystore.devtools.standin import StripeStandIn
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.processes import paystore_cli


def _checkout_that_times_out_after_stripe_created_the_session(api: Api, standin: StripeStandIn, user_id: str = "user_1") -> dict:
    standin.faults.create_delay_s = 2.5  # longer than paystore's Stripe timeout (2 s): Stripe did create it
    response = api.checkout(user_id)
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
    paid["amount_subtotal"] = paid["amount_total"] = 100

    answer = standin.deliver(standin.event("checkout.session.completed", paid))

    assert answer.status_code == 200 and answer.json()["outcome"] == "needs_review"
    row = purchase_row(engine, session["metadata"]["purchase_id"])
    assert row["status"] == "needs_review" and "subtotal 100 != price 4900" in row["review_reason"]
    assert (row["amount"], row["completed_at"]) == (4900, None)  # the price, not what the session charged


@pytest.fixture(scope="module")
def shop_with_codes_and_tax(make_server_for: Callable[..., str]) -> str:
    """A paystore whose programs take promotion codes and use Stripe Tax on a tax-exclusive price."""
    return make_server_for(allow_promotion_codes=True, automatic_tax=True, tax_behavior="exclusive")


@pytest.mark.parametrize(("choices", "charged"), [
    # (amount_total, amount_discount, amount_tax, discount) as Stripe charged them
    ({"code": "COURSE10", "country": "US"}, (4410, 490, 0, "promo_test_course10")),
    ({"country": "DE"}, (5831, 0, 931, None)),  # 19 % on top of the price
    ({"code": "FREECOURSE", "country": "US"}, (0, 4900, 0, "promo_test_freecourse")),  # no payment at all
], ids=["promotion_code", "exclusive_tax", "free_course"])
def test_recovered_session_with_a_promotion_code_or_tax_completes_with_what_was_charged(
    shop_with_codes_and_tax: str, standin: StripeStandIn, engine: Engine, choices: dict[str, str],
    charged: tuple[int, int, int, str | None],
) -> None:
    """Recovery judges the session as the webhook would have with the row in place: what was bought
    is the price, and the total adds up with the discount and the tax."""
    standin.webhook_url = shop_with_codes_and_tax + "/webhooks/stripe"
    api = Api(shop_with_codes_and_tax)
    session = _checkout_that_times_out_after_stripe_created_the_session(api, standin, "user_recovered_options")
    purchase_id = session["metadata"]["purchase_id"]
    standin.actions.choose(session["id"], **choices)
    [delivery] = standin.actions.pay_by_card(session["id"])

    answer = standin.deliver(delivery)

    assert answer.status_code == 200 and answer.json()["outcome"] == "recovered", answer.text
    row = purchase_row(engine, purchase_id)
    assert (row["status"], row["review_reason"], row["tax_behavior"]) == ("completed", None, "exclusive")
    assert (row["amount"], row["currency"]) == (4900, "usd")  # the price; what was charged is beside it
    assert (row["amount_total"], row["amount_discount"], row["amount_tax"], row["discount"]) == charged
    assert row["stripe_customer_id"] == session["customer"] and row["email"]
    shown = api.get(f"/purchases/{purchase_id}").json()
    assert (shown["status"], shown["amount_total"]) == ("completed", charged[0])
