"""A paid purchase and its refunds, as the refund tests drive them through the stand-in."""

from __future__ import annotations

from typing import Any

import requests
from sqlalchemy import Engine, text

from paystore.devtools.standin import StripeStandIn
from tests.lifecycle_events import Purchase
from tests.support.api import Api


def paid(api: Api, standin: StripeStandIn, user_id: str) -> Purchase:
    journey = Purchase.checkout(api, standin, user_id)
    [completed] = standin.actions.pay_by_card(journey.session["id"])
    assert standin.deliver(completed).json()["outcome"] == "completed"
    return journey


def deliver_all(standin: StripeStandIn, events: list[dict[str, Any]]) -> list[str]:
    answers = [standin.deliver(event) for event in events]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [a.json()["outcome"] for a in answers]


def notified(engine: Engine, purchase_id: str) -> list[tuple[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT body::jsonb FROM notifications WHERE purchase_id = :p ORDER BY created_at"),
                            {"p": purchase_id}).scalars().all()
    return [(b["type"], b["data"].get("previous_status") or (b["data"].get("refund") or {}).get("status")) for b in rows]


def ask(api: Api, purchase_id: str, key: str | None, body: dict[str, Any] | None = None) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return api.post(f"/purchases/{purchase_id}/refunds", body, headers=headers)


def refund_creates(standin: StripeStandIn) -> int:
    return sum(1 for c in standin.state.api_calls if (c["method"], c["path"]) == ("POST", "/v1/refunds"))


def charge_refunded_only(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [e for e in events if e["type"] == "charge.refunded"]
    assert found and all("refunds" not in e["data"]["object"] for e in found)  # no list, as at the pinned version
    return found


def paid_in(api: Api, standin: StripeStandIn, user_id: str, currency: str) -> Purchase:
    journey = Purchase.checkout(api, standin, user_id)
    standin.actions.choose(journey.session["id"], currency=currency)
    [completed] = standin.actions.pay_by_card(journey.session["id"])
    assert standin.deliver(completed).json()["outcome"] == "completed"
    charge = standin.state.charges[completed["data"]["object"]["payment_intent"]]
    assert charge["currency"] == currency  # Stripe charges, and refunds, the buyer in their own currency
    return journey
