"""The buyer's return from Stripe Checkout completes the purchase on its own, and racing the
webhook makes exactly one transition (one notification); without the lock it makes two."""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import Engine, text

from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.store import locks
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.locks import advisory_lock_holders
from tests.support.negative_controls import remove_the_lock_and_meet_before_applying


def _return(base_url: str, session_id: str, **kwargs: Any) -> requests.Response:
    # No Authorization header: this is the buyer's browser coming back from Stripe.
    return requests.get(f"{base_url}/checkout/return", params={"session_id": session_id}, timeout=60, **kwargs)


def _page_status(response: requests.Response) -> str:
    match = re.search(r'<span id="purchase-status">([a-z_]+)</span>', response.text)
    assert match, response.text
    return match[1]


def _notifications(engine: Engine, purchase_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(
            text("SELECT type FROM notifications WHERE purchase_id = :p ORDER BY created_at"), {"p": purchase_id}
        ))


def test_the_return_alone_completes_a_paid_purchase(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    created = api.checkout().json()
    assert standin.state.create_calls[-1]["params"]["success_url"].endswith("/checkout/return?session_id={CHECKOUT_SESSION_ID}")
    standin.settle(created["stripe_session_id"])  # paid at Stripe; the webhook never arrives

    page = _return(api.base_url, created["stripe_session_id"])

    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert _page_status(page) == "completed"
    assert "purchase is complete" in page.text
    assert purchase_row(engine, created["purchase_id"])["status"] == "completed"
    assert _notifications(engine, created["purchase_id"]) == ["purchase.completed"]
    # A reload changes nothing and tells nothing new.
    assert _page_status(_return(api.base_url, created["stripe_session_id"])) == "completed"
    assert _notifications(engine, created["purchase_id"]) == ["purchase.completed"]


def test_an_unpaid_return_shows_pending_and_changes_nothing(api: Api, engine: Engine) -> None:
    created = api.checkout().json()

    page = _return(api.base_url, created["stripe_session_id"])

    assert page.status_code == 200 and _page_status(page) == "pending"
    assert _notifications(engine, created["purchase_id"]) == []


def test_delayed_payment_awaits_then_refresh_completes_it(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    created = api.checkout().json()
    session_id, purchase_id = created["stripe_session_id"], created["purchase_id"]
    standin.settle(session_id, payment_status="unpaid")

    assert _page_status(_return(api.base_url, session_id)) == "awaiting_payment"
    standin.settle(session_id, payment_status="unpaid", intent_status="succeeded")
    refreshed = api.post(f"/purchases/{purchase_id}/refresh")

    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json() == api.get(f"/purchases/{purchase_id}").json()
    assert refreshed.json()["status"] == "completed"
    assert _notifications(engine, purchase_id) == ["purchase.awaiting_payment", "purchase.completed"]


def test_refresh_needs_a_token_and_a_known_purchase(api: Api, live_server: str) -> None:
    created = api.checkout().json()
    assert requests.post(f"{live_server}/purchases/{created['purchase_id']}/refresh", timeout=10).status_code == 401
    missing = api.post("/purchases/00000000-0000-4000-8000-000000000001/refresh")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "purchase_not_found"


def test_with_a_return_url_the_buyer_is_redirected_to_the_shop(
    make_server_for: Any, standin: StripeStandIn, engine: Engine
) -> None:
    base = make_server_for(return_url="https://shop.example/thanks?ref=ad7&lang=fr")
    created = Api(base).checkout().json()
    standin.settle(created["stripe_session_id"])

    page = _return(base, created["stripe_session_id"], allow_redirects=False)

    assert page.status_code == 303
    location = urlsplit(page.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example", "/thanks")
    assert parse_qs(location.query) == {
        "ref": ["ad7"], "lang": ["fr"], "purchase_id": [created["purchase_id"]], "status": ["completed"],
    }
    assert purchase_row(engine, created["purchase_id"])["status"] == "completed"


def _statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {str(i): s for i, s in conn.execute(text("SELECT id, status FROM purchases"))}


@pytest.mark.parametrize(
    ("session_id", "status", "code"),
    [
        ("", 400, "invalid_session_id"),
        ("not-a-session", 400, "invalid_session_id"),
        ("cs_test_x' OR '1'='1", 400, "invalid_session_id"),
        ("cs_test_" + "a" * 300, 400, "invalid_session_id"),
        ("cs_test_unknown0000000000000000", 404, "session_not_found"),
    ],
)
def test_a_forged_or_unknown_session_is_refused_and_changes_nothing(
    api: Api, standin: StripeStandIn, engine: Engine, session_id: str, status: int, code: str
) -> None:
    created = api.checkout().json()
    standin.settle(created["stripe_session_id"])
    before = _statuses(engine)

    answer = _return(api.base_url, session_id)

    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert _statuses(engine) == before
    assert count(engine, "SELECT count(*) FROM notifications") == 0


def test_a_paid_session_stripe_knows_but_that_is_not_ours_is_404(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    created = api.checkout().json()
    foreign = standin.new_session({"line_items": [{"price_data": {"currency": "usd", "unit_amount": "4900"}}],
                                   "metadata": {"purchase_id": created["purchase_id"]}})
    standin.settle(foreign["id"])
    calls_before = len(standin.state.create_calls)

    answer = _return(api.base_url, foreign["id"])

    assert answer.status_code == 404 and answer.json()["error"]["code"] == "session_not_found"
    assert purchase_row(engine, created["purchase_id"])["status"] == "pending"
    assert count(engine, "SELECT count(*) FROM notifications") == 0
    assert len(standin.state.create_calls) == calls_before


def test_a_session_naming_another_purchase_changes_nothing(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    """Stripe's session A says it belongs to purchase B: neither A nor B may be completed by it."""
    a, b = api.checkout("user_a").json(), api.checkout("user_b").json()
    standin.sessions[a["stripe_session_id"]]["metadata"]["purchase_id"] = b["purchase_id"]
    standin.settle(a["stripe_session_id"])

    answer = _return(api.base_url, a["stripe_session_id"])
    refreshed = api.post(f"/purchases/{a['purchase_id']}/refresh")

    assert answer.status_code == 409 and answer.json()["error"]["code"] == "session_mismatch"
    assert refreshed.status_code == 409 and refreshed.json()["error"]["code"] == "session_mismatch"
    assert purchase_row(engine, a["purchase_id"])["status"] == "pending"
    assert purchase_row(engine, b["purchase_id"])["status"] == "pending"
    assert count(engine, "SELECT count(*) FROM notifications") == 0


def _race_return_and_webhook(
    api: Api, standin: StripeStandIn, engine: Engine, purchase: Purchase
) -> tuple[requests.Response, str, bool]:
    """The return and the webhook of one paid purchase, both started while the test holds its
    lock; also whether both were seen parked on it at once."""
    answers: list[requests.Response] = []
    parked: list[bool] = []
    key = locks.purchase_lock_key(purchase.purchase_id)
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": locks.advisory_key_number(key)})
        buyer = threading.Thread(target=lambda: answers.append(_return(api.base_url, purchase.session["id"])))
        buyer.start()
        webhook = standin.deliver_async(purchase.event("completed_paid"))

        def both_parked_or_both_done() -> bool:
            waiting = [row for row in advisory_lock_holders(engine, key) if not row["granted"]]
            parked.append(len(waiting) == 2)
            return parked[-1] or (webhook.done() and not buyer.is_alive())

        wait_until(both_parked_or_both_done, timeout=30)
        holder.rollback()
    buyer.join(timeout=60)
    return answers[0], webhook.result(timeout=60).json()["outcome"], parked[-1]


def test_return_racing_the_webhook_makes_exactly_one_transition(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    purchase = Purchase.checkout(api, standin, "racer")
    standin.settle(purchase.session["id"])

    page, webhook_outcome, both_parked = _race_return_and_webhook(api, standin, engine, purchase)

    assert both_parked, "the return and the webhook were never both waiting for the purchase lock"
    assert _page_status(page) == "completed"
    assert webhook_outcome in ("completed", "stale")
    assert _notifications(engine, purchase.purchase_id) == ["purchase.completed"]


def test_negative_control_without_the_lock_return_and_webhook_both_transition(
    api: Api, standin: StripeStandIn, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    purchase = Purchase.checkout(api, standin, "racer")
    standin.settle(purchase.session["id"])
    remove_the_lock_and_meet_before_applying(monkeypatch, parties=2)

    page, webhook_outcome, _ = _race_return_and_webhook(api, standin, engine, purchase)

    # Both read "pending", both completed it: the shop is told twice of one payment.
    assert _page_status(page) == "completed" and webhook_outcome == "completed"
    assert _notifications(engine, purchase.purchase_id) == ["purchase.completed", "purchase.completed"]
