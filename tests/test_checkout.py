"""POST /checkout against a real database and the Stripe stand-in over HTTP."""

from __future__ import annotations

import uuid

import pytest
import requests
from sqlalchemy import Engine

from paystore.devtools.standin import StripeStandIn
from tests.support.api import Api
from tests.support.database import count, purchase_row


def test_checkout_creates_pending_purchase_and_stripe_session(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    response = api.checkout("user_1", "prog_py101")

    assert response.status_code == 201, response.text
    body = response.json()
    purchase_id = body["purchase_id"]
    assert uuid.UUID(purchase_id).version == 4
    assert body["status"] == "pending"
    assert (body["amount"], body["currency"]) == (4900, "usd")
    assert body["checkout_url"].startswith(standin.base_url + "/pay/cs_")
    [call] = standin.state.create_calls
    params = call["params"]
    assert call["idempotency_key"] == f"checkout:{purchase_id}"
    assert params["mode"] == "payment"
    assert params["client_reference_id"] == purchase_id
    assert params["metadata"] == {"purchase_id": purchase_id, "user_id": "user_1", "program_id": "prog_py101"}
    assert params["line_items"][0]["price_data"]["unit_amount"] == "4900"
    row = purchase_row(engine, purchase_id)
    assert row is not None and row["stripe_session_id"] == body["stripe_session_id"]
    assert row["status"] == "pending"


def test_checkout_requires_a_valid_bearer_token(live_server: str, standin: StripeStandIn, engine: Engine) -> None:
    body = {"user_id": "user_1", "program_id": "prog_py101"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}):
        response = Api(live_server, token="").http.post(live_server + "/checkout", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert count(engine, "SELECT count(*) FROM purchases") == 0
    assert standin.state.create_calls == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (None, "JSON object"),
        ("not json", "JSON object"),
        ([], "JSON object"),
        ({}, "user_id"),
        ({"user_id": "user_1"}, "program_id"),
        ({"program_id": "prog_py101"}, "user_id"),
        ({"user_id": 7, "program_id": "prog_py101"}, "user_id"),
        ({"user_id": "", "program_id": "prog_py101"}, "user_id"),
        ({"user_id": "a:b", "program_id": "prog_py101"}, "user_id"),
        ({"user_id": "x" * 129, "program_id": "prog_py101"}, "user_id"),
        ({"user_id": "user_1", "program_id": "prog py101"}, "program_id"),
        ({"user_id": "user_1", "program_id": "prog_py101", "amount": 1}, "unknown fields: amount"),
    ],
)
def test_bad_checkout_body_is_400_and_changes_nothing(
    api: Api, standin: StripeStandIn, engine: Engine, body: object, problem: str
) -> None:
    if body == "not json":
        response = api.http.post(api.base_url + "/checkout", data="{user_id:", headers={"Content-Type": "application/json"})
    else:
        response = api.post("/checkout", body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_body" and problem in error["message"]
    assert count(engine, "SELECT count(*) FROM purchases") == 0
    assert standin.state.create_calls == []


def test_unknown_program_is_404(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    response = api.checkout(program_id="prog_nope")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "program_not_found"
    assert count(engine, "SELECT count(*) FROM purchases") == 0


@pytest.mark.parametrize("fault", [500, 503, 402, "hang"])
def test_stripe_failure_or_timeout_is_502_and_leaves_no_row(
    api: Api, standin: StripeStandIn, engine: Engine, fault: int | str
) -> None:
    standin.faults.create.append(fault)

    response = api.checkout()

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "stripe_unavailable"
    assert count(engine, "SELECT count(*) FROM purchases") == 0
    # The lock went with the rollback: the next attempt goes through at once.
    assert api.checkout().status_code == 201


def test_get_purchase(api: Api, standin: StripeStandIn) -> None:
    created = api.checkout().json()

    found = api.get(f"/purchases/{created['purchase_id']}")

    assert found.status_code == 200
    assert found.json() == created
    assert set(created) >= {
        "purchase_id", "user_id", "program_id", "status", "amount", "currency",
        "stripe_session_id", "checkout_url", "created_at", "completed_at",
    }
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        response = api.get(f"/purchases/{missing}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "purchase_not_found"


def test_health_and_readiness_need_no_token(live_server: str) -> None:
    assert requests.get(live_server + "/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(live_server + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_unknown_route_is_json_404(api: Api) -> None:
    response = api.get("/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
