"""One active purchase per user and program: double clicks, retries and repeat buyers."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from paystore.devtools.standin import StripeStandIn
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count, purchase_row

ACTIVE_INDEX = "uq_purchases_one_active_per_user_program"


def _deliver(standin: StripeStandIn, purchase: Purchase, kind: str) -> None:
    assert standin.deliver(purchase.event(kind)).status_code == 200


def test_second_checkout_while_pending_returns_the_same_purchase(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    first = api.checkout()
    again = api.checkout()

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert len(standin.state.create_calls) == 1
    assert count(engine, "SELECT count(*) FROM purchases") == 1


def test_other_users_and_programs_are_independent(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    ids = {api.checkout(u, p).json()["purchase_id"] for u in ("u1", "u2") for p in ("prog_py101", "prog_rust")}
    assert len(ids) == 4 and len(standin.state.create_calls) == 4


@pytest.mark.parametrize(
    ("kinds", "status", "code"),
    [
        (["completed_paid"], 409, "already_purchased"),
        (["completed_paid", "dispute_created"], 409, "already_purchased"),
        (["completed_unpaid"], 409, "payment_in_progress"),
        (["expired"], 201, None),
        (["completed_unpaid", "async_failed"], 201, None),
        (["completed_paid", "refund_full"], 201, None),
        (["completed_paid", "dispute_lost"], 201, None),
    ],
)
def test_checkout_after_the_previous_purchase_moved_on(
    api: Api, standin: StripeStandIn, kinds: list[str], status: int, code: str | None
) -> None:
    previous = Purchase.checkout(api, standin, "user_1")
    for kind in kinds:
        _deliver(standin, previous, kind)

    response = api.checkout()

    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"]["code"] == code
        assert response.headers["Location"] == f"/purchases/{previous.purchase_id}"
    else:
        assert response.json()["purchase_id"] != previous.purchase_id


@pytest.mark.parametrize(
    ("stripe_says", "status", "old_status"),
    [
        ({"status": "expired", "payment_status": "unpaid"}, 201, "expired"),
        ({"status": "complete", "payment_status": "paid"}, 409, "completed"),
        ({"status": "open", "payment_status": "unpaid"}, 200, "pending"),
    ],
)
def test_lapsed_session_is_settled_from_stripe_before_deciding(
    api: Api, standin: StripeStandIn, engine: Engine, stripe_says: dict, status: int, old_status: str
) -> None:
    """The session passed expires_at but its `expired` webhook has not arrived yet."""
    old = api.checkout().json()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE purchases SET session_expires_at = :t WHERE id = :id"),
            {"t": datetime.now(UTC) - timedelta(minutes=1), "id": old["purchase_id"]},
        )
    standin.settle(old["stripe_session_id"], **stripe_says)

    response = api.checkout()

    assert response.status_code == status, response.text
    assert purchase_row(engine, old["purchase_id"])["status"] == old_status


def test_lapsed_session_and_stripe_down_is_502_and_changes_nothing(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    old = api.checkout().json()
    with engine.begin() as conn:
        conn.execute(text("UPDATE purchases SET session_expires_at = now() - interval '1 minute'"))
    standin.faults.retrieve[old["stripe_session_id"]] = 500

    assert api.checkout().status_code == 502
    assert count(engine, "SELECT count(*) FROM purchases") == 1
    assert purchase_row(engine, old["purchase_id"])["status"] == "pending"


def _twenty_concurrent_checkouts(url: str) -> list:
    with ThreadPoolExecutor(20) as pool:
        return list(pool.map(lambda _: Api(url).checkout("double_clicker"), range(20)))


@pytest.mark.gunicorn
def test_twenty_concurrent_checkouts_make_one_purchase_and_one_session(
    gunicorn_url: str, standin: StripeStandIn, engine: Engine
) -> None:
    standin.faults.create_delay_s = 0.2  # a realistic Stripe latency widens the window

    answers = _twenty_concurrent_checkouts(gunicorn_url)

    assert sorted(a.status_code for a in answers) == [200] * 19 + [201], [a.text for a in answers]
    assert len({a.json()["purchase_id"] for a in answers}) == 1
    assert len({a.json()["checkout_url"] for a in answers}) == 1
    assert count(engine, "SELECT count(*) FROM purchases") == 1
    assert len(standin.state.create_calls) == 1


@pytest.fixture
def without_active_index(engine: Engine) -> Iterator[None]:
    with engine.begin() as conn:
        definition = conn.scalar(text("SELECT pg_get_indexdef(CAST(:i AS regclass))"), {"i": ACTIVE_INDEX})
        conn.execute(text(f"DROP INDEX {ACTIVE_INDEX}"))
    yield
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE stripe_events, purchases CASCADE"))
        conn.execute(text(definition))


@pytest.mark.gunicorn
def test_negative_control_without_creation_lock_and_index_duplicates_appear(
    gunicorn_nolock_url: str, standin: StripeStandIn, engine: Engine, without_active_index: None
) -> None:
    standin.faults.create_delay_s = 0.2

    answers = _twenty_concurrent_checkouts(gunicorn_nolock_url)

    created = [a for a in answers if a.status_code == 201]
    assert len(created) > 1, "no duplicate purchase appeared without the lock and the index"
    assert count(engine, "SELECT count(*) FROM purchases WHERE user_id = 'double_clicker'") == len(created)
    assert len(standin.state.create_calls) == len(created)


@pytest.mark.gunicorn
def test_the_index_alone_refuses_a_second_active_purchase(
    gunicorn_nolock_url: str, standin: StripeStandIn, engine: Engine
) -> None:
    """Without the creation lock, the partial unique index is the backstop: no duplicate row."""
    standin.faults.create_delay_s = 0.2

    answers = _twenty_concurrent_checkouts(gunicorn_nolock_url)

    assert count(engine, "SELECT count(*) FROM purchases") == 1
    # Losers block on the index at INSERT, before any Stripe call, and get a clear 409 when the
    # winner commits; nothing was created at Stripe for them.
    codes = [a.status_code for a in answers]
    assert codes.count(201) == 1 and set(codes) <= {200, 201, 409}, [a.text for a in answers]
    assert all(a.json()["error"]["code"] == "checkout_conflict" for a in answers if a.status_code == 409)
    assert len(standin.state.create_calls) == 1
