"""Every call the gateway can make, checked against stripe-python's typed parameters for the pinned
API version: the create call with every option on and off, the retrieves, the customer."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace

import pytest
import stripe
from stripe.params import CustomerCreateParams, PaymentIntentRetrieveParams
from stripe.params.checkout import SessionCreateParams, SessionRetrieveParams

from paystore.stripe import calls
from paystore.stripe.calls import Call, CheckoutRequest
from paystore.stripe.version import STRIPE_API_VERSION
from tests.unit.stripe_types import problems

DEFINITIONS = {
    "checkout.sessions.create": SessionCreateParams,
    "checkout.sessions.retrieve": SessionRetrieveParams,
    "payment_intents.retrieve": PaymentIntentRetrieveParams,
    "customers.create": CustomerCreateParams,
}
PLAIN = CheckoutRequest(purchase_id=uuid.UUID(int=1), user_id="user_1", program_id="prog_py101", program_name="Python 101",
                        amount=4900, currency="usd", success_url="https://shop.test/ok?session_id={CHECKOUT_SESSION_ID}",
                        cancel_url="https://shop.test/cancel")
SWITCHES = ("allow_promotion_codes", "automatic_tax", "receipt_email", "invoice_creation", "tax_id_collection")


def checkout_variants() -> list[CheckoutRequest]:
    """Every combination of the switches, with and without a customer and an email."""
    variants = []
    for on in itertools.product((False, True), repeat=len(SWITCHES)):
        for who in ({}, {"email": "buyer@example.com"}, {"email": "buyer@example.com", "customer_id": "cus_test_1"}):
            options = dict(zip(SWITCHES, on, strict=True))
            tax = {"tax_behavior": "inclusive", "tax_code": "txcd_10000000"} if options["automatic_tax"] else {}
            variants.append(replace(PLAIN, **options, **who, **tax))
    return variants


def every_call() -> list[Call]:
    return [*(calls.create_checkout_session(r) for r in checkout_variants()),
            calls.retrieve_checkout_session("cs_test_1"), calls.retrieve_payment_intent("pi_test_1"),
            calls.create_customer("user_1", "buyer@example.com", livemode=False),
            calls.create_customer("user_1", None, livemode=True)]


def test_the_pinned_version_is_the_one_stripe_python_was_generated_for() -> None:
    """The typed parameters below describe exactly what paystore sends only for that version."""
    assert stripe.api_version == STRIPE_API_VERSION


@pytest.mark.parametrize("call", every_call(), ids=lambda c: f"{c.operation}:{sorted(c.params)}")
def test_every_call_is_what_stripe_python_types_for_the_pinned_version(call: Call) -> None:
    assert problems(call.params, DEFINITIONS[call.operation]) == []


def test_every_option_of_checkout_request_changes_the_call_it_makes() -> None:
    """No option is dead weight: each one, turned on alone, changes the parameters sent."""
    plain = calls.create_checkout_session(PLAIN).params
    for name, value in [("email", "b@example.com"), ("customer_id", "cus_test_1"), *((s, True) for s in SWITCHES)]:
        changed = replace(PLAIN, **{name: value}, **({"email": "b@example.com"} if name == "receipt_email" else {}))
        assert calls.create_checkout_session(changed).params != plain, name


def test_a_misspelt_nested_key_fails() -> None:
    params = calls.create_checkout_session(PLAIN).params
    params["payment_intent_data"] = {**params["payment_intent_data"], "metdata": params["payment_intent_data"]["metadata"]}

    assert problems(params, SessionCreateParams) == ["params.payment_intent_data.metdata: unknown parameter"]


def test_a_wrong_type_fails() -> None:
    params = calls.create_checkout_session(PLAIN).params
    params["line_items"][0]["price_data"]["unit_amount"] = "4900"

    assert problems(params, SessionCreateParams) == ["params.line_items[0].price_data.unit_amount: expected int, got '4900'"]


def test_an_unknown_enum_value_fails_although_stripe_python_accepts_any_string() -> None:
    params = calls.create_checkout_session(replace(PLAIN, automatic_tax=True, tax_behavior="exclusive")).params
    params["line_items"][0]["price_data"]["tax_behavior"] = "exclusiv"
    params["mode"] = "pay"

    found = problems(params, SessionCreateParams)
    assert any(p.startswith("params.mode: 'pay'") for p in found) and len(found) == 2, found
