"""Promotion codes, Stripe Tax and Adaptive Pricing, as a course shop turns them on: the completion
checks what was bought (the subtotal), accepts total = subtotal - discount + exclusive tax, and
records what was charged; anything else still needs review."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import Engine, text

from paystore.devtools.standin import StripeStandIn
from paystore.extension import Paystore
from paystore.services.purchasing.reconcile import charged
from paystore.store import purchases
from tests.support.api import Api
from tests.support.database import purchase_row


@pytest.fixture(scope="module")
def servers(make_server_for: Callable[..., str]) -> dict[str, str]:
    """A paystore whose programs allow promotion codes and use Stripe Tax, per tax behaviour."""
    return {behavior: make_server_for(allow_promotion_codes=True, automatic_tax=True, tax_behavior=behavior)
            for behavior in ("exclusive", "inclusive")}


@pytest.fixture
def shop_with_options(servers: dict[str, str], standin: StripeStandIn) -> Callable[..., Api]:
    def serve(tax_behavior: str = "exclusive") -> Api:
        standin.webhook_url = servers[tax_behavior] + "/webhooks/stripe"
        return Api(servers[tax_behavior])

    return serve


def checkout_and_pay(api: Api, standin: StripeStandIn, user_id: str, **choices: str | None) -> dict[str, Any]:
    """Checkout, the buyer's choices on Stripe's page, Pay; the purchase as the API then shows it."""
    created = api.post("/checkout", {"user_id": user_id, "program_id": "prog_py101", "email": f"{user_id}@example.com"})
    assert created.status_code == 201, created.text
    session_id = created.json()["stripe_session_id"]
    standin.actions.choose(session_id, **choices)
    [delivery] = standin.actions.pay_by_card(session_id)
    answer = standin.deliver(delivery)
    assert answer.status_code == 200, answer.text
    return api.get(f"/purchases/{created.json()['purchase_id']}").json()


def test_a_promotion_code_lowers_the_total_and_the_purchase_completes(
    shop_with_options: Callable[..., Api], standin: StripeStandIn
) -> None:
    purchase = checkout_and_pay(shop_with_options(), standin, "user_promo", code="COURSE10", country="US")

    assert purchase["status"] == "completed"
    assert (purchase["amount"], purchase["amount_discount"], purchase["amount_tax"], purchase["amount_total"]) == (
        4900, 490, 0, 4410)
    assert purchase["discount"] == "promo_test_course10"
    [call] = standin.state.create_calls
    assert call["params"]["allow_promotion_codes"] == "true" and call["params"]["automatic_tax"] == {"enabled": "true"}


def test_exclusive_tax_is_added_and_the_purchase_completes(shop_with_options: Callable[..., Api], standin: StripeStandIn) -> None:
    purchase = checkout_and_pay(shop_with_options("exclusive"), standin, "user_de", country="DE")

    assert purchase["status"] == "completed"
    assert (purchase["amount_tax"], purchase["amount_total"]) == (931, 5831)  # 19 % on top
    [call] = standin.state.create_calls
    assert call["params"]["line_items"][0]["price_data"]["tax_behavior"] == "exclusive"


def test_inclusive_tax_is_inside_the_price_and_the_purchase_completes(
    shop_with_options: Callable[..., Api], standin: StripeStandIn
) -> None:
    purchase = checkout_and_pay(shop_with_options("inclusive"), standin, "user_fr", code="COURSE10", country="FR")

    assert purchase["status"] == "completed"
    assert (purchase["amount_discount"], purchase["amount_tax"], purchase["amount_total"]) == (490, 735, 4410)


def test_adaptive_pricing_records_what_the_buyer_paid_in_their_currency(
    shop_with_options: Callable[..., Api], standin: StripeStandIn, engine: Engine
) -> None:
    purchase = checkout_and_pay(shop_with_options(), standin, "user_ch", country="US", currency="chf")

    assert purchase["status"] == "completed"
    assert (purchase["currency"], purchase["amount_total"]) == ("usd", 4900)  # the integration's currency
    assert (purchase["presentment_currency"], purchase["presentment_amount"]) == ("chf", 4312)
    notified = _notification(engine, purchase["purchase_id"])
    assert notified["presentment_amount"] == 4312 and notified == purchase


def test_a_free_course_by_promotion_code_completes_without_a_payment(
    shop_with_options: Callable[..., Api], standin: StripeStandIn
) -> None:
    purchase = checkout_and_pay(shop_with_options(), standin, "user_free", code="FREECOURSE", country="US")

    assert (purchase["status"], purchase["amount_total"], purchase["amount_discount"]) == ("completed", 0, 4900)


def _notification(engine: Engine, purchase_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        body = conn.scalar(text("SELECT body::jsonb FROM notifications WHERE purchase_id = :p"), {"p": purchase_id})
    return body["data"]["purchase"]


@pytest.mark.parametrize(("change", "reason"), [
    ({"amount_subtotal": 4000, "amount_total": 4000}, "subtotal 4000 != price 4900"),
    ({"amount_total": 6000}, "total 6000 != subtotal 4900 - discount 0 + exclusive tax 931"),
])
def test_a_session_whose_subtotal_or_total_does_not_add_up_needs_review(
    shop_with_options: Callable[..., Api], standin: StripeStandIn, engine: Engine, change: dict, reason: str
) -> None:
    api = shop_with_options()
    created = api.post("/checkout", {"user_id": "user_odd", "program_id": "prog_py101"}).json()
    standin.actions.choose(created["stripe_session_id"], country="DE")
    [delivery] = standin.actions.pay_by_card(created["stripe_session_id"])
    delivery["data"]["object"].update(change)

    assert standin.deliver(delivery).json()["outcome"] == "needs_review"
    row = purchase_row(engine, created["purchase_id"])
    assert row["status"] == "needs_review" and reason in row["review_reason"]


def test_a_promotion_code_is_refused_where_the_program_does_not_allow_them(api: Api, standin: StripeStandIn) -> None:
    created = api.checkout("user_nocodes").json()
    page = requests.post(created["checkout_url"], data={"action": "choose", "code": "COURSE10"}, allow_redirects=False,
                         timeout=30)

    assert page.status_code == 409 and "does not take promotion codes" in page.text
    assert "allow_promotion_codes" not in standin.state.create_calls[0]["params"]


def test_reconcile_shows_what_was_charged(
    shop_with_options: Callable[..., Api], standin: StripeStandIn, live_app: Flask
) -> None:
    purchase = checkout_and_pay(shop_with_options(), standin, "user_shown", code="COURSE10", country="DE", currency="gbp")

    with Paystore.of(live_app).session_factory() as db, db.begin():
        stored = purchases.get(db, uuid.UUID(purchase["purchase_id"]))

    assert charged(stored) == "5248 usd (discount 490, tax 838, promo_test_course10; buyer paid 4146 gbp)"
