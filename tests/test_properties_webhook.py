"""Generated webhook inputs: correctly signed events, mutated the way an attacker or a bug would.

The contract under test (README, docs/faults.md): whatever a correctly signed body holds, the
answer is 200 (handled and recorded), 400 (nothing written) or 503 (nothing written, Stripe
retries), always with a JSON body; a 500 is allowed only for an event recorded `failed` for
replay. Fixtures live for the whole test, so each example compares the database before and after.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import requests
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from paystore.devtools.standin import StripeStandIn
from tests.generated import DEEP_MARK, NASTY_CHARS, NASTY_TEXT, bounded, mutated, paths, serialize
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count

SESSION_KINDS = ["completed_paid", "completed_unpaid", "async_succeeded", "async_failed", "expired"]
CHARGE_KINDS = ["refund_partial", "refund_full", "dispute_created", "dispute_won", "dispute_lost"]
# What paystore reads of an event: half of all mutations aim here.
READ_PATHS = tuple(
    ("data", "object", *p) if p else ("data", "object")
    for p in [(), ("id",), ("object",), ("payment_status",), ("status",), ("amount_total",), ("currency",),
              ("livemode",), ("payment_intent",), ("metadata",), ("metadata", "purchase_id"),
              ("metadata", "user_id"), ("metadata", "program_id"), ("expires_at",), ("amount",),
              ("amount_refunded",), ("amount_subtotal",), ("total_details",), ("total_details", "amount_discount"),
              ("total_details", "amount_tax"), ("discounts",), ("presentment_details",),
              ("presentment_details", "presentment_amount"), ("presentment_details", "presentment_currency"),
              ("customer",), ("customer_details",), ("customer_details", "email")]
) + (("id",), ("type",), ("object",), ("livemode",), ("data",), ("api_version",))
_users = itertools.count()


def _post(standin: StripeStandIn, body: bytes) -> requests.Response:
    return requests.post(standin.webhook_url, data=body, headers=standin.signed_headers(body), timeout=60)


def _snapshot(engine: Engine) -> tuple[int, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, status, payment, refunded_amount, dispute, stripe_payment_intent_id, review_reason "
            "FROM purchases ORDER BY id"
        ))
        return count(engine, "SELECT count(*) FROM stripe_events"), [tuple(r) for r in rows]


def _assert_contract(engine: Engine, response: requests.Response, event_id: Any, before: Any) -> None:
    body = response.json()  # always JSON, whatever the status
    if response.status_code == 200:
        assert isinstance(body["outcome"], str)
        return
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str), body
    if response.status_code == 500:
        outcome = count(engine, "SELECT count(*) FROM stripe_events WHERE stripe_event_id = :i AND outcome = 'failed'",
                        i=str(event_id))
        assert outcome == 1, f"a 500 that is not recorded for replay: {body}"
        return
    assert response.status_code in (400, 503), body
    assert _snapshot(engine) == before, f"{response.status_code} but something was written: {body}"


def _purchases(api: Api, standin: StripeStandIn) -> tuple[Purchase, Purchase]:
    """A pending purchase (session events) and a completed one (charge and dispute events)."""
    pending = Purchase.checkout(api, standin, f"prop_{next(_users)}")
    paid = Purchase.checkout(api, standin, f"prop_{next(_users)}")
    assert standin.deliver(paid.event("completed_paid")).status_code == 200
    return pending, paid


def _event(pending: Purchase, paid: Purchase, kind: str) -> dict[str, Any]:
    if kind == "unknown":
        return pending.standin.event("customer.created", {"id": "cus_1", "object": "customer", "livemode": False})
    return pending.event(kind) if kind in SESSION_KINDS else paid.event(kind)


@bounded(60)
@given(data=st.data(), kind=st.sampled_from([*SESSION_KINDS, *CHARGE_KINDS, "unknown"]))
def test_mutated_signed_events_get_200_400_or_503_never_an_unrecorded_500(
    api: Api, standin: StripeStandIn, engine: Engine, data: st.DataObject, kind: str
) -> None:
    pending, paid = _purchases(api, standin)
    event, story = data.draw(mutated(_event(pending, paid, kind), focus=READ_PATHS), label="mutation")
    before = _snapshot(engine)

    response = _post(standin, serialize(event))

    _assert_contract(engine, response, event.get("id"), before)


@bounded(25)
@given(data=st.data(), nasty=st.lists(NASTY_TEXT.map(lambda t: t + "\x00") | NASTY_CHARS, min_size=1, max_size=4))
def test_unstorable_strings_in_unread_fields_are_recorded_and_applied(
    api: Api, standin: StripeStandIn, engine: Engine, data: st.DataObject, nasty: list[str]
) -> None:
    """NUL and lone surrogates, which jsonb refuses, in fields paystore never reads: the event is
    still applied and recorded (those characters stored as U+FFFD), so Stripe stops resending."""
    purchase = Purchase.checkout(api, standin, f"nul_{next(_users)}")
    event = purchase.event("completed_paid")
    leaves = [r for r in READ_PATHS if not any(o != r and o[: len(r)] == r for o in READ_PATHS)]
    unread = [p for p in paths(event) if not any(p[: len(r)] == r for r in leaves) and not any(r[: len(p)] == p for r in leaves)]
    for value in nasty:
        where = data.draw(st.sampled_from(unread), label="where")
        parent = event
        for key in where[:-1]:
            parent = parent[key]
        parent[where[-1]] = value
    event["data"]["object"].setdefault("metadata", {})["note\x00\ud800"] = nasty[0]

    response = _post(standin, serialize(event))

    assert (response.status_code, response.json().get("outcome")) == (200, "completed"), response.text
    stored = count(engine, "SELECT count(*) FROM stripe_events WHERE stripe_event_id = :i AND outcome = 'completed' "
                           "AND payload::text LIKE '%' || chr(65533) || '%'", i=event["id"])
    assert stored == 1


STORABLE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)


@bounded(25)
@given(notes=st.lists(STORABLE_TEXT, min_size=1, max_size=4), ascii_only=st.booleans())
def test_the_recorded_payload_is_the_body_as_parsed(
    api: Api, standin: StripeStandIn, engine: Engine, notes: list[str], ascii_only: bool
) -> None:
    """A body with nothing jsonb refuses is stored from its own text (no re-encoding); one with
    escapes that might be (a surrogate pair, from ensure_ascii) is re-encoded. Either way the
    record holds what the body says."""
    purchase = Purchase.checkout(api, standin, f"raw_{next(_users)}")
    event = purchase.event("completed_paid")
    event["data"]["object"]["custom_fields"] = [{"key": f"k{i}", "text": {"value": note}} for i, note in enumerate(notes)]
    body = json.dumps(event, ensure_ascii=ascii_only).encode()

    response = _post(standin, body)

    assert (response.status_code, response.json().get("outcome")) == (200, "completed"), response.text
    with engine.connect() as conn:
        stored = conn.scalar(text("SELECT payload FROM stripe_events WHERE stripe_event_id = :i"), {"i": event["id"]})
    assert stored == json.loads(body)


@bounded(20)
@given(depth=st.integers(65, 20_000), data=st.data(), kind=st.sampled_from(["completed_paid", "refund_full", "unknown"]))
def test_deep_nesting_anywhere_in_a_signed_event_is_400_invalid_payload(
    api: Api, standin: StripeStandIn, engine: Engine, depth: int, data: st.DataObject, kind: str
) -> None:
    pending, paid = _purchases(api, standin)
    event = _event(pending, paid, kind)
    where = data.draw(st.sampled_from(paths(event)), label="where")
    parent = event
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = DEEP_MARK % depth
    before = _snapshot(engine)

    response = _post(standin, serialize(event))

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_payload"
    assert _snapshot(engine) == before


@bounded(10)
@given(depth=st.integers(2, 60))
def test_nesting_within_the_bound_in_an_unread_field_is_accepted(
    api: Api, standin: StripeStandIn, engine: Engine, depth: int
) -> None:
    purchase = Purchase.checkout(api, standin, f"deep_{next(_users)}")
    event = purchase.event("completed_paid")
    event["data"]["object"]["custom_fields"] = DEEP_MARK % depth

    response = _post(standin, serialize(event))

    assert (response.status_code, response.json()["outcome"]) == (200, "completed"), response.text


@bounded(20)
@given(kind=st.sampled_from([*SESSION_KINDS, *CHARGE_KINDS, "unknown"]), object_too=st.booleans())
def test_an_event_of_the_other_mode_is_recorded_and_changes_nothing(
    api: Api, standin: StripeStandIn, engine: Engine, kind: str, object_too: bool
) -> None:
    """A live event at a test key (a shared secret, or a forged one): recorded as `wrong_mode`
    and answered 200 (durably recorded: Stripe need not resend it), never applied."""
    pending, paid = _purchases(api, standin)
    event = _event(pending, paid, kind)
    event["livemode"] = True
    if object_too:
        event["data"]["object"]["livemode"] = True
    before = _snapshot(engine)[1]

    first = standin.deliver(event)
    again = standin.deliver(event)

    assert (first.status_code, first.json()["outcome"]) == (200, "wrong_mode"), first.text
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert _snapshot(engine)[1] == before
    recorded = count(engine, "SELECT count(*) FROM stripe_events WHERE stripe_event_id = :i AND outcome = 'wrong_mode'",
                     i=event["id"])
    assert recorded == 1


@bounded(20)
@given(body=st.one_of(
    st.binary(max_size=200),
    NASTY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.just(b"NaN"),
    st.just(b"[1e999]"),
    st.builds(lambda v: json.dumps(v).encode(), st.lists(st.integers()) | st.dictionaries(NASTY_TEXT, NASTY_TEXT)),
))
def test_signed_bodies_that_are_not_events_are_400_invalid_payload(
    standin: StripeStandIn, engine: Engine, body: bytes
) -> None:
    before = _snapshot(engine)

    response = _post(standin, body)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_payload"
    assert _snapshot(engine) == before
