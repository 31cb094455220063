"""Bounded waits and an unreachable database: always a 503 with Retry-After, never a silent 2xx."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from paystore.config import ConfigError, Settings
from paystore.db import sqlalchemy_url
from paystore.devtools.http import free_port
from paystore.devtools.standin import StripeStandIn
from paystore.store import locks
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count, purchase_row


@pytest.fixture
def hold_lock(engine: Engine) -> Iterator[Callable[[str], None]]:
    """Hold advisory locks from another connection, as a slow transaction would."""
    conn = engine.connect()
    conn.begin()

    def hold(key: str) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": locks.advisory_key_number(key)})

    yield hold
    conn.rollback()
    conn.close()


@pytest.fixture
def impatient(make_server_for: Callable[..., str]) -> Api:
    return Api(make_server_for(lock_timeout_ms=300))


def test_webhook_lock_timeout_is_503_with_retry_after_and_records_nothing(
    api: Api, impatient: Api, standin: StripeStandIn, engine: Engine, hold_lock: Callable[[str], None]
) -> None:
    purchase = Purchase.checkout(api, standin, "user_1")
    event = purchase.event("completed_paid")
    hold_lock(locks.purchase_lock_key(purchase.purchase_id))

    answer = standin.deliver(event, url=impatient.base_url + "/webhooks/stripe")

    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert answer.json()["error"]["code"] == "lock_timeout"
    assert count(engine, "SELECT count(*) FROM stripe_events") == 0
    assert purchase_row(engine, purchase.purchase_id)["status"] == "pending"


def test_checkout_lock_timeout_is_503_and_leaves_no_row(
    impatient: Api, standin: StripeStandIn, engine: Engine, hold_lock: Callable[[str], None]
) -> None:
    hold_lock(locks.purchase_create_lock_key("user_1", "prog_py101"))

    answer = impatient.checkout()

    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert answer.json()["error"]["code"] == "lock_timeout"
    assert count(engine, "SELECT count(*) FROM purchases") == 0
    assert standin.state.create_calls == []


@pytest.fixture
def database_down(make_server_for: Callable[..., str]) -> Api:
    return Api(make_server_for(database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/gone"))


def test_database_down_is_503_everywhere(database_down: Api, standin: StripeStandIn) -> None:
    body = standin.event("checkout.session.completed", standin.new_session({}))
    answers = {
        "checkout": database_down.checkout(),
        "purchase": database_down.get(f"/purchases/{'0' * 8}-0000-4000-8000-000000000001"),
        "webhook": standin.deliver(body, url=database_down.base_url + "/webhooks/stripe"),
        "readyz": database_down.get("/readyz"),
    }
    for name, answer in answers.items():
        assert answer.status_code == 503, name
        assert answer.json()["error"]["code"] == "database_unavailable", name
        assert "nobody" not in answer.text
    assert database_down.get("/healthz").status_code == 200


def test_readyz_is_503_until_the_schema_is_at_head(server_url: str, make_server_for: Callable[..., str]) -> None:
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    name = f"paystore_empty_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        empty = make_url(sqlalchemy_url(server_url)).set(database=name).render_as_string(hide_password=False)
        answer = Api(make_server_for(database_url=empty)).get("/readyz")
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "schema_not_at_head"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.no_db
def test_settings_from_env_and_their_errors() -> None:
    settings = Settings.from_env(
        {
            "STRIPE_SECRET_KEY": "sk_live_topsecret",
            "STRIPE_WEBHOOK_SECRET": " whsec_a , whsec_b ,",
            "PAYSTORE_API_TOKENS": "t1,t2",
            "PAYSTORE_LOCK_TIMEOUT_MS": "250",
        }
    )
    assert settings.stripe_webhook_secrets == ("whsec_a", "whsec_b")
    assert settings.api_tokens == ("t1", "t2") and settings.lock_timeout_ms == 250
    assert settings.stripe_livemode and settings.database_url is None
    assert "topsecret" not in repr(settings) and "whsec_a" not in repr(settings) and "t1" not in repr(settings)
    bad = [("PAYSTORE_LOCK_TIMEOUT_MS", "soon"), ("PAYSTORE_LOCK_TIMEOUT_MS", "0"), ("PAYSTORE_STRIPE_TIMEOUT_S", "-1")]
    for name, value in bad:
        with pytest.raises(ConfigError, match=name) as raised:
            Settings.from_env({name: value})
        assert value not in str(raised.value)
