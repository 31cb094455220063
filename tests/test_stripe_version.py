"""One Stripe API version: sent on every request, spoken by the stand-in, and an event of another
version applied only when the fields paystore reads mean the same in it."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import Engine

from paystore.devtools.credentials import TOKEN
from paystore.devtools.standin import API_VERSION, StripeStandIn
from paystore.extension import Paystore
from paystore.services.purchasing.reconcile import reconcile
from paystore.services.stripe_events.sync import sync
from paystore.stripe.version import STRIPE_API_VERSION
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count, purchase_row


def test_every_request_to_stripe_carries_the_pinned_version(
    api: Api, standin: StripeStandIn, live_app: Flask, engine: Engine
) -> None:
    """Every kind of call paystore makes: a checkout (customer and session), the buyer's return
    (session), reconcile (session and intent), a refund by the shop, and `events sync` (events)."""
    response = api.post("/checkout", {"user_id": "user_versioned", "program_id": "prog_py101", "email": "v@example.com"})
    assert response.status_code == 201, response.text
    session = standin.actions.pay_by_bank_debit(response.json()["stripe_session_id"])[0]["data"]["object"]
    assert api.get(f"/checkout/return?session_id={session['id']}", allow_redirects=False).status_code in (200, 303)
    ext = Paystore.of(live_app)
    with ext.session_factory() as db:
        reconcile(db, ext.gateway, ext.settings, timedelta(0))
    paid = Purchase.checkout(api, standin, "user_versioned_refund")
    [delivery] = standin.actions.pay_by_card(paid.session["id"])
    assert standin.deliver(delivery).status_code == 200
    refunded = api.post(f"/purchases/{paid.purchase_id}/refunds", headers={"Idempotency-Key": "version-refund-1"})
    assert refunded.status_code == 202, refunded.text
    with ext.session_factory() as db:
        sync(db, ext.gateway, ext.settings, timedelta(hours=1), undelivered_only=False)

    seen = {(c["method"], c["path"].split("/")[2], c["stripe_version"]) for c in standin.state.api_calls}
    assert {(method, resource) for method, resource, _ in seen} >= {
        ("POST", "customers"), ("POST", "checkout"), ("GET", "checkout"), ("GET", "payment_intents"),
        ("POST", "refunds"), ("GET", "events")}
    assert {version for _, _, version in seen} == {STRIPE_API_VERSION}


@pytest.mark.parametrize("version", [None, "2025-09-30.clover", "2026-10-28"])
def test_the_stand_in_refuses_a_request_without_the_pinned_version(standin: StripeStandIn, version: str | None) -> None:
    """As Stripe refuses a version it does not know (a missing one it would answer in the account's
    default): a call that lost the pin fails every test that makes it, not just this file's."""
    headers = {"Authorization": "Bearer sk_test_x", **({"Stripe-Version": version} if version else {})}
    answer = requests.get(f"{standin.base_url}/v1/events", headers=headers, timeout=10)

    assert answer.status_code == 400
    assert answer.json() == {"error": {"type": "invalid_request_error", "message": f"Invalid Stripe API version: {version}"}}
    pinned = requests.get(f"{standin.base_url}/v1/events", headers={**headers, "Stripe-Version": STRIPE_API_VERSION},
                          timeout=10)
    assert pinned.status_code == 200


def test_the_stand_in_fixtures_were_brought_to_the_pinned_version() -> None:
    """A fact of the fixture file, not a copy of the constant: moving the pin without bringing the
    example objects to the new version (fixtures/README.md) fails here, and the stand-in then
    refuses every request paystore makes."""
    fixtures = Path(__file__).resolve().parents[1] / "paystore/devtools/standin/fixtures/stripe_objects.json"
    assert json.loads(fixtures.read_text())["api_version"] == API_VERSION == STRIPE_API_VERSION


def test_the_stand_in_speaks_the_pinned_version(api: Api, standin: StripeStandIn) -> None:
    journey = Purchase.checkout(api, standin, "user_shape")
    event = journey.event("completed_paid")

    assert event["api_version"] == STRIPE_API_VERSION
    session = event["data"]["object"]
    assert "currency_conversion" not in session  # removed in 2025-09-30.clover
    assert {"presentment_details", "total_details", "amount_subtotal", "customer_details", "discounts",
            "automatic_tax"} <= set(session)


def _metric(live_server: str, version: str) -> float:
    text = requests.get(live_server + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    line = next((ln for ln in text.splitlines()
                 if ln.startswith("paystore_webhook_api_version_mismatch_total") and f'version="{version}"' in ln), None)
    return float(line.split()[-1]) if line else 0.0


def test_an_event_of_another_version_whose_fields_mean_the_same_is_applied_counted_and_logged(
    api: Api, standin: StripeStandIn, engine: Engine, live_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="paystore")
    journey = Purchase.checkout(api, standin, "user_clover")
    event = journey.event("completed_paid")
    event["api_version"] = "2025-09-30.clover"
    before = _metric(live_server, "2025-09-30.clover")

    answer = standin.deliver(event)

    assert (answer.status_code, answer.json()["outcome"]) == (200, "completed")
    assert _metric(live_server, "2025-09-30.clover") == before + 1
    assert any(r.levelno == logging.WARNING and "2025-09-30.clover" in r.getMessage() for r in caplog.records)


def test_a_pre_basil_adaptive_pricing_session_is_recorded_refused_and_healed_by_reconcile(
    api: Api, standin: StripeStandIn, engine: Engine, live_app: Flask, live_server: str
) -> None:
    """Before 2025-03-31.basil such a session's `currency` is the buyer's: reading it as the
    program's would send a real payment to needs_review, or let a wrong amount through."""
    journey = Purchase.checkout(api, standin, "user_acacia")
    paid = standin.settle(journey.session["id"])
    old = journey.event("completed_paid", currency="chf", amount_total=4312,
                        currency_conversion={"amount_subtotal": 4900, "amount_total": 4900, "fx_rate": "0.88",
                                             "source_currency": "usd"})
    old["api_version"] = "2024-09-30.acacia"

    first, again = standin.deliver(old), standin.deliver(old)

    for answer in (first, again):  # Stripe retries a 5xx: the retry is refused again, not a duplicate
        assert answer.status_code == 500 and answer.json()["error"]["code"] == "unsupported_api_version", answer.text
    assert count(engine, "SELECT count(*) FROM stripe_events WHERE outcome = 'failed' AND error LIKE '%2025-03-31.basil%'") == 1
    assert purchase_row(engine, journey.purchase_id)["status"] == "pending"
    assert _metric(live_server, "2024-09-30.acacia") >= 2
    # Reconcile asks Stripe in the pinned version, where `currency` is the program's: it completes.
    ext = Paystore.of(live_app)
    with ext.session_factory() as db:
        [row] = reconcile(db, ext.gateway, ext.settings, timedelta(0))
    assert paid["status"] == "complete" and row.status_after == "completed"
