"""GET /users/<user_id>/programs/<program_id>/access: true only for completed, and for disputed
until the dispute is lost."""

from __future__ import annotations

import uuid

import pytest
import requests
from sqlalchemy import Engine, text

from paystore.devtools.standin import StripeStandIn
from paystore.models import PurchaseStatus
from tests.lifecycle_events import Purchase as Journey
from tests.support.api import Api

GRANTS = {PurchaseStatus.COMPLETED, PurchaseStatus.DISPUTED}


def insert_purchase(engine: Engine, status: str, user_id: str = "user_1", age_minutes: int = 0) -> str:
    purchase_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO purchases (id, user_id, program_id, status, amount, currency, created_at) "
                 "VALUES (:i, :u, 'prog_py101', :s, 4900, 'usd', now() - make_interval(mins => :m))"),
            {"i": purchase_id, "u": user_id, "s": status, "m": age_minutes},
        )
    return purchase_id


def access(api: Api, user_id: str = "user_1", program_id: str = "prog_py101") -> requests.Response:
    return api.get(f"/users/{user_id}/programs/{program_id}/access")


@pytest.mark.parametrize("status", list(PurchaseStatus))
def test_each_status(api: Api, engine: Engine, status: PurchaseStatus) -> None:
    purchase_id = insert_purchase(engine, str(status))

    answer = access(api)

    assert answer.status_code == 200
    assert answer.json() == {"access": status in GRANTS, "purchase_id": purchase_id, "status": str(status)}


def test_no_purchase_means_no_access_and_nulls(api: Api) -> None:
    assert access(api).json() == {"access": False, "purchase_id": None, "status": None}


def test_a_granting_purchase_wins_over_newer_failed_ones(api: Api, engine: Engine) -> None:
    completed = insert_purchase(engine, "completed", age_minutes=60)
    insert_purchase(engine, "failed", age_minutes=5)
    insert_purchase(engine, "refunded", age_minutes=1)

    assert access(api).json() == {"access": True, "purchase_id": completed, "status": "completed"}


def test_without_a_grant_the_active_then_the_newest_purchase_answers(api: Api, engine: Engine) -> None:
    insert_purchase(engine, "expired", age_minutes=60)
    newest = insert_purchase(engine, "failed", age_minutes=1)
    assert access(api).json()["purchase_id"] == newest
    pending = insert_purchase(engine, "pending", age_minutes=30)
    assert access(api).json() == {"access": False, "purchase_id": pending, "status": "pending"}


def test_a_dispute_keeps_access_until_it_is_lost(api: Api, standin: StripeStandIn) -> None:
    journey = Journey.checkout(api, standin, "user_1")
    seen = []
    for kind in ("completed_paid", "dispute_created", "dispute_lost"):
        standin.deliver(journey.event(kind))
        seen.append((access(api).json()["access"], access(api).json()["status"]))

    assert seen == [(True, "completed"), (True, "disputed"), (False, "dispute_lost")]


def test_refusals(api: Api, live_server: str) -> None:
    unauthenticated = requests.get(f"{live_server}/users/user_1/programs/prog_py101/access", timeout=10)
    unknown_program = access(api, program_id="prog_nope")
    bad_user = access(api, user_id="user:1")

    assert unauthenticated.status_code == 401
    assert unknown_program.status_code == 404 and unknown_program.json()["error"]["code"] == "program_not_found"
    assert bad_user.status_code == 400 and bad_user.json()["error"]["code"] == "invalid_request"
