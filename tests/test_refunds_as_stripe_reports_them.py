"""Refunds as Stripe reports them at the pinned API version, and in the buyer's currency.

`charge.refunded` carries no list of the charge's refunds (not included unless expanded since
2022-11-15): paystore lists them (GET /v1/refunds?charge=) before taking the purchase's lock, so
the refunded amount is always what the refunds that count add up to, whatever arrives and in
which order. With Adaptive Pricing the charge and its refunds are in the buyer's currency and are
compared with what the buyer paid in it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from paystore.devtools.standin import StripeStandIn
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.refund_journeys import ask, charge_refunded_only, deliver_all, notified, paid, paid_in

# ---------------------------------------------------------------- charge.refunded as the pinned version sends it

@pytest.mark.parametrize("order", ["made", "reversed", "interleaved"])
def test_part_refunds_seen_only_through_charge_refunded_end_refunded_and_never_come_back(
    api: Api, standin: StripeStandIn, engine: Engine, order: str
) -> None:
    """300 then 4600, and Stripe sends only `charge.refunded` (an endpoint not subscribed to refund.*):
    paystore lists the charge's refunds each time, so the amount is right whatever the order."""
    journey = paid(api, standin, f"user_listed_{order}")
    first = charge_refunded_only(standin.actions.refund(journey.session["id"], 300))
    if order == "interleaved":  # the first event is handled before the second refund exists
        assert deliver_all(standin, first) == ["partially_refunded"]
    second = charge_refunded_only(standin.actions.refund(journey.session["id"], 4600))
    events = {"made": first + second, "reversed": second + first, "interleaved": second + first}[order]

    outcomes = deliver_all(standin, events)

    expected = {"made": ["refunded", "stale"], "reversed": ["refunded", "stale"], "interleaved": ["refunded", "duplicate"]}
    assert outcomes == expected[order]
    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("refunded", 4900)
    assert [t for t, _ in notified(engine, journey.purchase_id)] == ["purchase.completed", "purchase.refunded"]
    assert any(c["method"] == "GET" and c["path"] == "/v1/refunds" for c in standin.state.api_calls)


def test_a_failed_refund_seen_only_through_the_list_is_not_counted(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    journey = paid(api, standin, "user_listed_failed")
    created = charge_refunded_only(standin.actions.refund(journey.session["id"], 1000))
    standin.actions.fail_refund(journey.session["id"])  # its refund.* events are never delivered

    assert deliver_all(standin, created) == ["refund_failed"]

    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("completed", 0)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT amount, status FROM refunds")).one() == (1000, "failed")


def test_stripe_unreachable_while_listing_is_a_5xx_and_records_nothing(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = paid(api, standin, "user_listed_down")
    [event] = charge_refunded_only(standin.actions.refund(journey.session["id"]))
    standin.state.refund_list_fault = 500

    answer = standin.deliver(event)

    assert answer.status_code >= 500 and answer.json()["error"]["code"] == "stripe_unavailable"
    assert count(engine, "SELECT count(*) FROM stripe_events WHERE type = 'charge.refunded'") == 0
    assert count(engine, "SELECT count(*) FROM refunds") == 0
    standin.state.refund_list_fault = None
    assert deliver_all(standin, [event]) == ["refunded"]  # Stripe's retry


# ---------------------------------------------------------------- Adaptive Pricing: the buyer's currency

def test_adaptive_pricing_refunded_in_full_in_the_buyers_currency_is_refunded(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = paid_in(api, standin, "user_chf", "chf")  # 4900 usd, 4312 chf

    assert deliver_all(standin, standin.actions.refund(journey.session["id"])) == ["refunded", "stale"]

    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"], row["amount_total"], row["presentment_amount"]) == (
        "refunded", 4312, 4900, 4312)


def test_adaptive_pricing_a_partial_refund_is_partial_and_the_cap_is_in_the_buyers_currency(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = paid_in(api, standin, "user_jpy", "jpy")  # 4900 usd, 7350 jpy
    standin.faults.deliver_api_events = False

    part = ask(api, journey.purchase_id, "jpy-1", {"amount": 5000})  # more than 4900, less than 7350
    assert (part.status_code, part.json()["purchase"]["status"]) == (202, "completed"), part.text
    too_much = ask(api, journey.purchase_id, "jpy-2", {"amount": 2351})
    assert (too_much.status_code, too_much.json()["error"]["code"]) == (400, "refund_exceeds_remaining")
    rest = ask(api, journey.purchase_id, "jpy-3", {"amount": 2350})
    assert (rest.status_code, rest.json()["purchase"]["status"]) == (202, "refunded"), rest.text


def test_a_refund_in_another_currency_than_the_charge_sends_the_purchase_to_review(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = paid_in(api, standin, "user_chf_usd", "chf")
    [created, _] = standin.actions.refund(journey.session["id"], 1000)
    created["data"]["object"]["currency"] = "usd"  # not the charge's: it cannot be added up with chf

    assert deliver_all(standin, [created]) == ["needs_review"]

    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("needs_review", 0)
    assert "is in usd, the charge in chf" in row["review_reason"]


def test_a_refund_kept_in_the_integration_currency_counts_the_buyers_amount_beside_it(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    """The other shape Stripe may use for Adaptive Pricing: the refund in usd, what the buyer gets
    back in chf in `presentment_details`."""
    journey = paid_in(api, standin, "user_chf_beside", "chf")
    [created, _] = standin.actions.refund(journey.session["id"])
    created["data"]["object"].update(currency="usd", amount=4900,
                                     presentment_details={"presentment_amount": 4312, "presentment_currency": "chf"})

    assert deliver_all(standin, [created]) == ["refunded"]
    assert purchase_row(engine, journey.purchase_id)["refunded_amount"] == 4312
