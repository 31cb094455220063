"""Every call the gateway can make, checked against stripe-python's typed parameters for the pinned
API version and against the method and path stripe-python's own service method requests: the create
call with every option on and off, the retrieves, the customer, refunds and the events list. A call
added to paystore/stripe/calls.py and left out here fails the completeness test."""

from __future__ import annotations

import functools
import inspect
import itertools
import typing
import uuid
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
import stripe
from stripe.params import (
    CustomerCreateParams,
    EventListParams,
    PaymentIntentRetrieveParams,
    RefundCreateParams,
    RefundListParams,
)
from stripe.params.checkout import SessionCreateParams, SessionRetrieveParams

from paystore.services.purchasing.refunds import REASONS
from paystore.services.stripe_events.webhooks import HANDLED_EVENTS
from paystore.stripe import calls
from paystore.stripe.calls import Call, CheckoutRequest
from paystore.stripe.version import STRIPE_API_VERSION
from tests.unit.stripe_types import problems

DEFINITIONS = {
    "checkout.sessions.create": SessionCreateParams,
    "checkout.sessions.retrieve": SessionRetrieveParams,
    "payment_intents.retrieve": PaymentIntentRetrieveParams,
    "customers.create": CustomerCreateParams,
    "refunds.list": RefundListParams,
    "refunds.create": RefundCreateParams,
    "events.list": EventListParams,
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
            calls.create_customer("user_1", None, livemode=True),
            calls.list_refunds("ch_test_1"), calls.list_refunds("ch_test_1", starting_after="re_test_1"),
            *refund_variants(), *events_list_variants()]


def refund_variants() -> list[Call]:
    """A shop's refund (all or part, with each reason or none) and an early fraud warning's."""
    metadata = {"purchase_id": str(PLAIN.purchase_id)}
    return [*(calls.create_refund("pi_test_1", amount, reason, metadata, f"refund:{amount}:{reason}")
              for amount in (None, 1200) for reason in (None, *REASONS)),
            calls.create_refund("pi_test_1", None, "fraudulent", {**metadata, "early_fraud_warning": "issfr_test_1"},
                                "early_fraud_warning:issfr_test_1")]


def events_list_variants() -> list[Call]:
    """`paystore events sync`: every event or the undelivered ones, the first page or a later one."""
    return [calls.list_events(HANDLED_EVENTS, 1_790_000_000, undelivered_only=undelivered, starting_after=after)
            for undelivered in (False, True) for after in (None, "evt_test_1")]


def call_problems(call: Call) -> list[str]:
    """What is wrong with one call: its parameters as stripe-python types them for the pinned
    version, and its method and path as stripe-python's service method for the operation sends it."""
    found = problems(call.params, DEFINITIONS[call.operation])
    route = stripe_python_route(call)
    if (call.method, urlsplit(call.path).path) != route:
        found.append(f"{call.method} {call.path} is not {call.operation}, which stripe-python sends as {route}")
    return found


def stripe_python_route(call: Call) -> tuple[str, str]:
    """(method, path) of the request stripe-python's own method for `call.operation` makes, e.g.
    StripeClient.v1.checkout.sessions.create; a retrieve is given the id `call` names."""
    seen: list[tuple[str, str]] = []

    class Recorder(stripe.HTTPClient):
        name = "recorder"

        def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> tuple[str, int, dict]:
            seen.append((method.lower(), urlsplit(url).path))
            return "{}", 200, {}

    *resource, verb = call.operation.split(".")
    service = functools.reduce(getattr, resource, stripe.StripeClient("sk_test_routes", http_client=Recorder()).v1)
    ids = (urlsplit(call.path).path.rsplit("/", 1)[1],) if verb == "retrieve" else ()
    getattr(service, verb)(*ids, params=call.params)
    [route] = seen
    return route


def call_builders() -> set[str]:
    """The public functions of paystore.stripe.calls that answer a Call: what the gateway can send."""
    return {name for name, f in vars(calls).items()
            if inspect.isfunction(f) and not name.startswith("_") and typing.get_type_hints(f).get("return") is Call}


def builders_left_out(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The call builders that every_call() never uses."""
    used: set[str] = set()

    def recorded(name: str, real: Any, *args: Any, **kwargs: Any) -> Call:
        used.add(name)
        return real(*args, **kwargs)

    builders = call_builders()
    for name in builders:
        monkeypatch.setattr(calls, name, functools.partial(recorded, name, getattr(calls, name)))
    every_call()
    return builders - used


def every_call_problems() -> list[str]:
    """The test below, over every call at once (its negative controls break calls.py itself)."""
    return [f"{call.operation}: {p}" for call in every_call() for p in call_problems(call)]


def test_every_call_paystore_can_make_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert builders_left_out(monkeypatch) == set()
    assert {call.operation for call in every_call()} == set(DEFINITIONS)


def test_a_call_added_to_calls_py_and_left_out_here_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    def list_payouts() -> Call:
        return Call("payouts.list", "get", "/v1/payouts")

    monkeypatch.setattr(calls, "list_payouts", list_payouts, raising=False)

    assert builders_left_out(monkeypatch) == {"list_payouts"}


def test_the_pinned_version_is_the_one_stripe_python_was_generated_for() -> None:
    """The typed parameters below describe exactly what paystore sends only for that version."""
    assert stripe.api_version == STRIPE_API_VERSION


@pytest.mark.parametrize("call", every_call(), ids=lambda c: f"{c.operation}:{sorted(c.params)}")
def test_every_call_is_what_stripe_python_types_for_the_pinned_version(call: Call) -> None:
    assert call_problems(call) == []


def test_every_option_of_checkout_request_changes_the_call_it_makes() -> None:
    """No option is dead weight: each one, turned on alone, changes the parameters sent."""
    plain = calls.create_checkout_session(PLAIN).params
    for name, value in [("email", "b@example.com"), ("customer_id", "cus_test_1"), *((s, True) for s in SWITCHES)]:
        changed = replace(PLAIN, **{name: value}, **({"email": "b@example.com"} if name == "receipt_email" else {}))
        assert calls.create_checkout_session(changed).params != plain, name


def test_a_misspelt_nested_key_in_calls_py_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    real = calls.create_checkout_session

    def misspelt(request: CheckoutRequest) -> Call:
        call = real(request)
        intent = call.params["payment_intent_data"]
        intent["metdata"] = intent.pop("metadata")
        return call

    monkeypatch.setattr(calls, "create_checkout_session", misspelt)
    found = every_call_problems()

    assert "checkout.sessions.create: params.payment_intent_data.metdata: unknown parameter" in found
    assert {p.split(":")[0] for p in found} == {"checkout.sessions.create"}


def test_a_wrong_type_in_calls_py_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    real = calls.create_checkout_session

    def stringly(request: CheckoutRequest) -> Call:
        call = real(request)
        call.params["line_items"][0]["price_data"]["unit_amount"] = str(request.amount)
        return call

    monkeypatch.setattr(calls, "create_checkout_session", stringly)

    assert "checkout.sessions.create: params.line_items[0].price_data.unit_amount: expected int, got '4900'" in (
        every_call_problems())


def test_a_call_sent_to_another_path_than_its_operation_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    real = calls.create_refund
    monkeypatch.setattr(calls, "create_refund", lambda *args: replace(real(*args), path="/v1/refund"))

    found = every_call_problems()

    assert found and all(p.startswith("refunds.create: post /v1/refund is not refunds.create") for p in found), found
    assert "('post', '/v1/refunds')" in found[0]


def test_a_string_that_may_be_emptied_is_a_free_string_not_an_enum() -> None:
    """stripe-python types such a field `Literal['']|str`: any text, or '' to clear it."""
    assert problems({"business_name": "Acme Ltd"}, CustomerCreateParams) == []
    assert problems({"business_name": ""}, CustomerCreateParams) == []
    assert problems({"business_name": 3}, CustomerCreateParams) != []
    # `Literal['']|Literal['exempt', 'none', 'reverse']|str` is an enum that may be emptied: still closed.
    assert problems({"tax_exempt": ""}, CustomerCreateParams) == []
    [refused] = problems({"tax_exempt": "nonee"}, CustomerCreateParams)
    assert refused.startswith("params.tax_exempt: 'nonee' is none of"), refused


def test_an_unknown_enum_value_fails_although_stripe_python_accepts_any_string() -> None:
    params = calls.create_checkout_session(replace(PLAIN, automatic_tax=True, tax_behavior="exclusive")).params
    params["line_items"][0]["price_data"]["tax_behavior"] = "exclusiv"
    params["mode"] = "pay"

    found = problems(params, SessionCreateParams)
    assert any(p.startswith("params.mode: 'pay'") for p in found) and len(found) == 2, found
