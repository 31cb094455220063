"""The buyer: one Stripe Customer per user, made at the first checkout and reused; the receipt to
the email checkout was given; an invoice and the buyer's tax id when the shop asks for them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine

from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.store import locks
from tests.support.api import Api
from tests.support.database import count
from tests.support.locks import someone_waits_for
from tests.support.negative_controls import no_lock


def checkout(api: Api, user_id: str, program_id: str = "prog_py101", email: str | None = None) -> Any:
    body = {"user_id": user_id, "program_id": program_id, **({"email": email} if email else {})}
    return api.post("/checkout", body)


def test_the_first_checkout_makes_the_users_customer_and_the_next_reuses_it(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    first = checkout(api, "user_cust", "prog_py101", "ada@example.com")
    second = checkout(api, "user_cust", "prog_rust", "ada@example.com")

    assert first.status_code == second.status_code == 201, (first.text, second.text)
    [customer] = standin.state.customers.values()
    assert (customer["email"], customer["metadata"]) == ("ada@example.com", {"user_id": "user_cust"})
    sessions = [call["params"] for call in standin.state.create_calls]
    assert [s["customer"] for s in sessions] == [customer["id"], customer["id"]]
    assert all(s["payment_intent_data"]["receipt_email"] == "ada@example.com" for s in sessions)
    assert all("customer_email" not in s for s in sessions)
    assert first.json()["email"] == "ada@example.com"
    assert count(engine, "SELECT count(*) FROM customers") == 1


@pytest.mark.parametrize("email", [
    "not-an-email", "a b@example.com", "a@b", 42, "x" * 250 + "@example.com",
    # What Stripe refuses as an email, which paystore could only answer "Stripe unavailable, try again":
    "a<b>@example.com", '"x,y"@example.com', "a,b@example.com", "Ada <ada@example.com>",  # quotes, commas, brackets
    "a..b@example.com", ".a@example.com", "a.@example.com", "a@b..cc", "a@.example.com",  # empty, leading, trailing dots
    "a@-.com", "a@ex-.com", "a@-ex.com", "a@exa_mple.com", "a@example.c", "a@example.123",  # domain labels
    "x" * 65 + "@example.com", "a@" + "l" * 64 + ".com",  # a name over 64, a label over 63 characters
    "ü@example.com", "a@bücher.de",  # not ASCII (an international domain goes as punycode: xn--bcher-kva.de)
])
def test_a_bad_email_is_a_400_and_changes_nothing(api: Api, standin: StripeStandIn, engine: Engine, email: Any) -> None:
    answer = api.post("/checkout", {"user_id": "user_bad_email", "program_id": "prog_py101", "email": email})

    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_body"
    assert "email" in answer.json()["error"]["message"]
    assert standin.state.api_calls == [] and count(engine, "SELECT count(*) FROM purchases") == 0


@pytest.mark.parametrize("email", [
    "o'brien+courses@mail.example.co.uk", "a.b-c_d@sub-domain.example.com", "ada@xn--bcher-kva.de", "A{b}~@x1.io",
])
def test_a_good_email_reaches_stripe_as_given(api: Api, standin: StripeStandIn, email: str) -> None:
    answer = checkout(api, "user_good_email", email=email)

    assert answer.status_code == 201, answer.text
    assert [c["email"] for c in standin.state.customers.values()] == [email]


def test_invoice_and_tax_id_collection_reach_stripe_when_the_shop_asks(
    make_server_for: Callable[..., str], standin: StripeStandIn
) -> None:
    api = Api(make_server_for(invoice_creation=True, tax_id_collection=True, automatic_tax=True, receipt_email=False))

    assert checkout(api, "user_company", email="billing@company.example").status_code == 201

    [call] = standin.state.create_calls
    params = call["params"]
    assert params["invoice_creation"]["enabled"] == "true" and params["tax_id_collection"] == {"enabled": "true"}
    assert params["customer_update"] == {"address": "auto", "name": "auto"}
    assert "receipt_email" not in params["payment_intent_data"]


def _two_first_checkouts(api: Api) -> list[Any]:
    """The same user's first checkouts of two programs at once, with two emails (two tabs)."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda args: checkout(api, "user_twice", *args),
                             [("prog_py101", "one@example.com"), ("prog_rust", "two@example.com")]))


def test_two_first_checkouts_of_one_user_at_once_make_one_customer(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    seen_waiting = threading.Event()
    key = locks.customer_create_lock_key("user_twice")

    def hold_until_the_other_waits(params: dict[str, Any]) -> None:
        if not seen_waiting.is_set():  # the first create call: the other checkout must be parked on the lock
            wait_until(lambda: someone_waits_for(engine, key), timeout=30)
            seen_waiting.set()

    standin.faults.before_create_customer = hold_until_the_other_waits

    answers = _two_first_checkouts(api)

    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert seen_waiting.is_set(), "the second checkout never waited for the customer lock"
    assert len(standin.state.customers) == 1
    assert len({a.json()["purchase_id"] for a in answers}) == 2
    assert count(engine, "SELECT count(DISTINCT stripe_customer_id) FROM purchases") == 1


def test_negative_control_without_the_lock_two_first_checkouts_make_two_customers(
    api: Api, standin: StripeStandIn, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_lock = locks.take_xact_lock

    def lock_all_but_customers(db: Any, key: str, timeout_ms: int) -> float:
        return no_lock(db, key, timeout_ms) if key.startswith("customer:") else real_lock(db, key, timeout_ms)

    monkeypatch.setattr(locks, "take_xact_lock", lock_all_but_customers)
    both_creating = threading.Barrier(2, timeout=20)
    standin.faults.before_create_customer = lambda params: both_creating.wait()

    answers = _two_first_checkouts(api)

    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert len(standin.state.customers) == 2, "no second customer: the race did not show"
    assert count(engine, "SELECT count(*) FROM customers") == 1  # one is kept, the other is an orphan at Stripe


def test_a_paid_session_whose_email_is_longer_than_paystore_keeps_still_completes(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    """Stripe takes a longer address than the purchase's column holds: the payment completes and
    the purchase keeps no email, instead of the webhook failing on every retry."""
    checkout = api.checkout("user_long_email").json()
    session = standin.settle(checkout["stripe_session_id"])
    session["customer_details"] = {**(session.get("customer_details") or {}), "email": "a" * 64 + "@" + "b" * 186 + ".com"}

    answer = standin.deliver(standin.event("checkout.session.completed", session))

    assert (answer.status_code, answer.json()["outcome"]) == (200, "completed"), answer.text
    assert count(engine, "SELECT count(*) FROM purchases WHERE user_id = 'user_long_email' AND email IS NULL") == 1
