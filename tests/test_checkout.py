"""POST /checkout against a real database and the Stripe stand-in over HTTP."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine

from tests.stripe_standin import StripeStandIn
from tests.support import Api, count, purchase_row


def test_checkout_creates_pending_purchase_and_stripe_session(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    response = api.checkout("user_1", "prog_py101")

    assert response.status_code == 201, response.text
    body = response.json()
    purchase_id = body["purchase_id"]
    assert uuid.UUID(purchase_id).version == 4
    assert body["status"] == "pending"
    assert (body["amount"], body["currency"]) == (4900, "usd")
    assert body["checkout_url"].startswith(standin.base_url + "/pay/cs_")
    [call] = standin.create_calls
    params = call["params"]
    assert call["idempotency_key"] == f"checkout:{purchase_id}"
    assert params["mode"] == "payment"
    assert params["client_reference_id"] == purchase_id
    assert params["metadata"] == {"purchase_id": purchase_id, "user_id": "user_1", "program_id": "prog_py101"}
    assert params["line_items"][0]["price_data"]["unit_amount"] == "4900"
    row = purchase_row(engine, purchase_id)
    assert row is not None and row["stripe_session_id"] == body["stripe_session_id"]
    assert row["status"] == "pending"
