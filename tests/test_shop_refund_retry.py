"""A shop's refund whose answer was lost after Stripe made it: the request's transaction timed out
waiting for the purchase's lock (a webhook held it), so nothing of it was recorded, and the
refund's own `refund.created` then applied it. The shop retries with the same Idempotency-Key and
must get that same refund, not a refusal judged against the amount the refund already took: the
refund carries the shop's request in its metadata, and the webhook records the request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text

from paystore.devtools.standin import StripeStandIn
from paystore.services.stripe_events import money_back
from paystore.store import locks
from tests.support.api import Api
from tests.support.database import purchase_row
from tests.support.refund_journeys import paid, refund_creates


@pytest.fixture(scope="module")
def quick_to_give_up(make_server_for: Callable[..., str]) -> str:
    return make_server_for(lock_timeout_ms=300)


def _refund_whose_answer_is_lost(api: Api, standin: StripeStandIn, engine: Engine, user_id: str) -> tuple[str, Any]:
    journey = paid(api, standin, user_id)
    standin.faults.deliver_api_events = False  # the test delivers the refund's events itself, later
    with engine.connect() as webhook:  # as a webhook of the purchase holding its lock
        webhook.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                        {"k": locks.advisory_key_number(locks.purchase_lock_key(journey.purchase_id))})
        lost = api.post(f"/purchases/{journey.purchase_id}/refunds", {}, headers={"Idempotency-Key": "ticket-7"})
        webhook.rollback()
    assert (lost.status_code, lost.json()["error"]["code"]) == (503, "lock_timeout"), lost.text
    assert refund_creates(standin) == 1  # Stripe made it
    created = [e for e in standin.state.events.values() if e["type"] == "refund.created"]
    assert [standin.deliver(e).status_code for e in created] == [200]
    assert purchase_row(engine, journey.purchase_id)["status"] == "refunded"
    return journey.purchase_id, created[0]["data"]["object"]["id"]


def test_a_retry_after_the_webhook_answers_the_same_refund(
    quick_to_give_up: str, standin: StripeStandIn, engine: Engine
) -> None:
    standin.webhook_url = quick_to_give_up + "/webhooks/stripe"
    api = Api(quick_to_give_up)
    purchase_id, refund_id = _refund_whose_answer_is_lost(api, standin, engine, "user_retry_refund")

    again = api.post(f"/purchases/{purchase_id}/refunds", {}, headers={"Idempotency-Key": "ticket-7"})

    assert again.status_code == 202, again.text
    assert (again.json()["refund"]["id"], again.json()["purchase"]["status"]) == (refund_id, "refunded")
    assert refund_creates(standin) == 1


def test_negative_control_without_the_request_in_the_refund_the_retry_is_refused(
    quick_to_give_up: str, standin: StripeStandIn, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin.webhook_url = quick_to_give_up + "/webhooks/stripe"
    api = Api(quick_to_give_up)
    monkeypatch.setattr(money_back, "record_shop_requests", lambda *args: None)
    purchase_id, _ = _refund_whose_answer_is_lost(api, standin, engine, "user_retry_refund_lost")

    again = api.post(f"/purchases/{purchase_id}/refunds", {}, headers={"Idempotency-Key": "ticket-7"})

    assert (again.status_code, again.json()["error"]["code"]) == (409, "purchase_not_refundable"), again.text
