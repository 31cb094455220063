"""Webhook signature and payload checks: bad input is a 400 that writes nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from paystore.devtools.credentials import WEBHOOK_SECRET
from paystore.devtools.standin import StripeStandIn, sign
from tests.support.database import count


def _post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(url, data=body, headers=headers, timeout=30)


def _completed_event(standin: StripeStandIn, api_checkout: Any) -> dict[str, Any]:
    created = api_checkout().json()
    return standin.event("checkout.session.completed", standin.settle(created["stripe_session_id"]))


def _nothing_written(engine: Engine) -> bool:
    return (
        count(engine, "SELECT count(*) FROM stripe_events") == 0
        and count(engine, "SELECT count(*) FROM purchases WHERE status <> 'pending'") == 0
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unsigned", "missing Stripe-Signature"),
        ("wrong_secret", "No signatures found matching"),
        ("tampered_body", "No signatures found matching"),
        ("stale_timestamp", "Timestamp outside the tolerance zone"),
        ("garbled_header", "Unable to extract timestamp"),
    ],
)
def test_bad_signature_is_400_and_writes_nothing(api, standin: StripeStandIn, engine: Engine, case: str, message: str) -> None:
    event = _completed_event(standin, api.checkout)
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    if case == "wrong_secret":
        headers["Stripe-Signature"] = sign(body, "whsec_not_ours")
    elif case == "tampered_body":
        headers["Stripe-Signature"] = sign(body, WEBHOOK_SECRET)
        body = body.replace(b'"paid"', b'"unpaid"')
    elif case == "stale_timestamp":
        headers["Stripe-Signature"] = sign(body, WEBHOOK_SECRET, timestamp=int(time.time()) - 301)
    elif case == "garbled_header":
        headers["Stripe-Signature"] = "v1=abc"

    response = _post(standin.webhook_url, body, headers)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_webhook" and message in error["message"]
    assert WEBHOOK_SECRET not in response.text
    assert _nothing_written(engine)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "malformed event"),
        (b"[]", "not a Stripe event"),
        (b'{"object": "event", "id": "evt_1", "type": "checkout.session.completed"}', "data.object"),
        (b'{"object": "event", "id": "nope", "type": "x", "data": {"object": {}}}', "evt_"),
        (b'{"object": "event", "id": "evt_1", "type": 5, "data": {"object": {}}}', "event.type"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_malformed_payload_with_valid_signature_is_400(standin: StripeStandIn, engine: Engine, body: bytes, message: str) -> None:
    response = _post(standin.webhook_url, body, standin.signed_headers(body))

    assert response.status_code == 400
    # Signed, so not a signature problem: the code the README names for a bad payload.
    assert response.json()["error"]["code"] == "invalid_payload"
    assert message in response.json()["error"]["message"]
    assert _nothing_written(engine)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update(id="sess_1"), "cs_"),
        (lambda s: s.update(payment_status=None), "payment_status"),
        (lambda s: s.update(metadata={"purchase_id": "not-a-uuid"}), "not a UUID"),
        (lambda s: s.update(amount_total="4900"), "amount_total"),
    ],
)
def test_signed_session_event_missing_what_paystore_needs_is_400(
    api, standin: StripeStandIn, engine: Engine, mutate: Any, message: str
) -> None:
    event = _completed_event(standin, api.checkout)
    mutate(event["data"]["object"])

    response = standin.deliver(event)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_payload" and message in error["message"]
    assert _nothing_written(engine)


def test_rotated_secrets_are_all_accepted(make_server_for: Any, standin: StripeStandIn, api, engine: Engine) -> None:
    rotating = make_server_for(stripe_webhook_secrets=("whsec_old_1", WEBHOOK_SECRET))
    event = _completed_event(standin, api.checkout)
    body = json.dumps(event).encode()

    old = _post(rotating + "/webhooks/stripe", body, standin.signed_headers(body, secret="whsec_old_1"))
    again = _post(rotating + "/webhooks/stripe", body, standin.signed_headers(body))
    # During rotation Stripe sends one v1= per secret in a single header.
    t = int(time.time())
    both = sign(body, "whsec_unknown", t) + "," + sign(body, WEBHOOK_SECRET, t).split(",")[1]
    third = _post(rotating + "/webhooks/stripe", body, {"Content-Type": "application/json", "Stripe-Signature": both})

    assert (old.status_code, old.json()["outcome"]) == (200, "completed")
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert (third.status_code, third.json()["outcome"]) == (200, "duplicate")


def test_unconfigured_secret_is_503_so_stripe_retries(make_server_for: Any, standin: StripeStandIn, engine: Engine) -> None:
    unconfigured = make_server_for(stripe_webhook_secrets=())
    body = json.dumps(standin.event("checkout.session.completed", standin.new_session({}))).encode()

    response = _post(unconfigured + "/webhooks/stripe", body, standin.signed_headers(body))

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "webhook_not_configured"
    assert _nothing_written(engine)


def test_unknown_event_type_is_recorded_and_ignored(standin: StripeStandIn, engine: Engine) -> None:
    event = standin.event("customer.created", {"id": "cus_1", "object": "customer"})

    first = standin.deliver(event)
    second = standin.deliver(event)

    assert (first.status_code, first.json()["outcome"]) == (200, "ignored")
    assert (second.status_code, second.json()["outcome"]) == (200, "duplicate")
    assert count(engine, "SELECT count(*) FROM stripe_events WHERE outcome = 'ignored'") == 1


def test_a_failed_payment_is_recorded_apart_from_a_failed_handler(api, standin: StripeStandIn, engine: Engine) -> None:
    """Found by the state machine: the outcome of a transition to `failed` was the record's own
    marker of a handler failure, so a redelivery took the record over and applied it again."""
    created = api.checkout().json()
    session = standin.settle(created["stripe_session_id"], payment_status="unpaid", intent_status="requires_payment_method")
    event = standin.event("checkout.session.async_payment_failed", session)

    first, again = standin.deliver(event), standin.deliver(event)

    assert (first.status_code, first.json()["outcome"]) == (200, "payment_failed")
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert count(engine, "SELECT count(*) FROM stripe_events WHERE outcome = 'failed'") == 0
    assert count(engine, "SELECT attempts FROM stripe_events") == 1
