"""A storm of checkout and webhook pairs, as buyers and Stripe make one when something breaks:
a buyer who gets a retryable 5xx (or no answer) clicks again, Stripe redelivers every event
until it is answered 2xx. Every answer is recorded, so a test can say what the fault cost."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from sqlalchemy import Engine

from paystore.devtools.credentials import STRIPE_KEY, TOKEN, WEBHOOK_SECRET
from paystore.devtools.standin import StripeStandIn
from tests.support.api import Api
from tests.support.database import count

NO_ANSWER = 0  # the connection failed: refused, reset, or closed before an answer
RETRYABLE = (502, 503)


@dataclass
class Answers:
    checkout: list[int] = field(default_factory=list)
    webhook: list[int] = field(default_factory=list)

    def beyond_retryable(self) -> list[int]:
        """Answers a client could not simply retry: anything but success, 502/503 or no answer."""
        return [a for a in self.checkout + self.webhook if a not in (200, 201, NO_ANSWER, *RETRYABLE)]

    def refused(self) -> list[int]:
        return [a for a in self.checkout + self.webhook if a == NO_ANSWER or a >= 500]


Route = Callable[[], str]  # the base URL the next request goes to (a load balancer's choice)


def deliver_until_2xx(standin: StripeStandIn, event: dict[str, Any], url: str | Route, answers: list[int]) -> requests.Response:
    """Stripe's redelivery, compressed: every non-2xx is retried after a growing pause (bounded)."""
    pause = 0.05
    for _ in range(120):
        base = url() if callable(url) else url
        target = base if base.endswith("/webhooks/stripe") else base + "/webhooks/stripe"
        try:
            answer = standin.deliver(event, target)
        except requests.ConnectionError:
            answers.append(NO_ANSWER)
        else:
            answers.append(answer.status_code)
            if 200 <= answer.status_code < 300:
                return answer
            assert answer.status_code >= 500, answer.text  # a 4xx would be a bug: nothing is wrong with the event
        time.sleep(pause)
        pause = min(pause * 1.5, 1.0)
    raise AssertionError(f"event {event['id']} never accepted: {answers[-5:]}")


def checkout_until_answered(api: Api | Route, user_id: str, answers: list[int]) -> dict[str, Any]:
    """A buyer who gets a 5xx, or whose page never loads, clicks again (bounded). Safe: a second
    checkout for the same buyer and program answers the open purchase, it makes no other."""
    for _ in range(120):
        client = api if isinstance(api, Api) else Api(api())
        try:
            response = client.checkout(user_id)
        except requests.ConnectionError:
            answers.append(NO_ANSWER)
        else:
            answers.append(response.status_code)
            if response.status_code in (200, 201):
                return response.json()
            assert response.status_code in RETRYABLE, response.text
        time.sleep(0.2)
    raise AssertionError(f"checkout for {user_id} never succeeded")


def storm_env(database_url: str, standin: StripeStandIn, stripe_timeout_s: float) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": standin.base_url,
        "PAYSTORE_API_TOKENS": TOKEN,
        "PAYSTORE_STRIPE_TIMEOUT_S": str(stripe_timeout_s),
        "PAYSTORE_LOCK_TIMEOUT_MS": "10000",
    }


def nothing_half_made(engine: Engine) -> None:
    # A purchase is only ever committed together with its Stripe session.
    assert count(engine, "SELECT count(*) FROM purchases WHERE stripe_session_id IS NULL") == 0
    # Every recorded event was finished, and a completion recorded is a completed purchase.
    assert count(engine, "SELECT count(*) FROM stripe_events WHERE outcome IS NULL") == 0
    assert count(engine, (
        "SELECT count(*) FROM stripe_events e LEFT JOIN purchases p ON p.id = e.purchase_id "
        "WHERE e.outcome IN ('completed', 'recovered') AND p.status IS DISTINCT FROM 'completed'"
    )) == 0


def each_bought_once(engine: Engine, buyers: Sequence[str]) -> None:
    """Every buyer has exactly one purchase, completed, and exactly one event completed it."""
    rows = count(engine, "SELECT count(*) FROM purchases WHERE user_id = ANY(:u)", u=list(buyers))
    completed = count(engine, "SELECT count(*) FROM purchases WHERE user_id = ANY(:u) AND status = 'completed'",
                      u=list(buyers))
    assert (rows, completed) == (len(buyers), len(buyers)), f"{rows} purchases, {completed} completed, {len(buyers)} buyers"
    doubled = count(engine, (
        "SELECT count(*) FROM (SELECT purchase_id FROM stripe_events WHERE outcome IN ('completed', 'recovered') "
        "GROUP BY purchase_id HAVING count(*) > 1) twice"
    ))
    assert doubled == 0, f"{doubled} purchases were completed by more than one event"
