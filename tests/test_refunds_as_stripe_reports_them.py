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


def test_adaptive_pricing_a_partial_refund_is_partial_and_the_shop_refunds_only_the_rest_in_full(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    """A partial refund made at Stripe counts in the buyer's currency. The shop may not name an
    amount for such a purchase (Stripe reads it in the charge's currency, which paystore cannot be
    sure of), so it refunds what is left in full, with no amount."""
    journey = paid_in(api, standin, "user_jpy", "jpy")  # 4900 usd, 7350 jpy
    deliver_all(standin, standin.actions.refund(journey.session["id"], 5000))
    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("completed", 5000)
    standin.faults.deliver_api_events = False

    part = ask(api, journey.purchase_id, "jpy-1", {"amount": 1000})
    assert (part.status_code, part.json()["error"]["code"]) == (400, "partial_refund_unsupported"), part.text
    assert "refund it in full" in part.json()["error"]["message"]
    rest = ask(api, journey.purchase_id, "jpy-2", {})
    assert rest.status_code == 202, rest.text
    assert (rest.json()["refund"]["amount"], rest.json()["purchase"]["status"]) == (2350, "refunded")


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


# ---------------------------------------------------------------- purchases refunded before refunds were kept one by one

def _refunded_before_refund_facts(api: Api, standin: StripeStandIn, engine: Engine, user_id: str, carried: int):
    """A purchase refunded 1000 by a release that kept only the charge's total (no refund rows);
    `carried` is what migration 0005 carries into reported_refunded_amount (0: as if it had not)."""
    journey = paid(api, standin, user_id)
    standin.actions.refund(journey.session["id"], 1000)  # its events went to the old release
    with engine.begin() as conn:
        conn.execute(text("UPDATE purchases SET refunded_amount = 1000, reported_refunded_amount = :r WHERE id = :p"),
                     {"r": carried, "p": journey.purchase_id})
    return journey


def test_a_refund_of_a_purchase_refunded_before_refunds_were_kept_lists_the_others(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = _refunded_before_refund_facts(api, standin, engine, "user_before_facts", carried=1000)
    [created] = [e for e in standin.actions.refund(journey.session["id"], 3900) if e["type"] == "refund.created"]

    assert deliver_all(standin, [created]) == ["refunded"]

    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("refunded", 4900)
    assert count(engine, "SELECT count(*) FROM refunds WHERE purchase_id = :p", p=journey.purchase_id) == 2


def test_without_the_carried_amount_the_refund_would_stand_alone(api: Api, standin: StripeStandIn, engine: Engine) -> None:
    """Negative control: nothing tells paystore the charge had other refunds, so the later refund is
    counted alone and a purchase refunded in full keeps granting access."""
    journey = _refunded_before_refund_facts(api, standin, engine, "user_before_facts_lost", carried=0)
    [created] = [e for e in standin.actions.refund(journey.session["id"], 3900) if e["type"] == "refund.created"]

    deliver_all(standin, [created])

    row = purchase_row(engine, journey.purchase_id)
    assert (row["status"], row["refunded_amount"]) == ("completed", 3900)


def test_a_shop_refund_of_a_purchase_refunded_before_refunds_were_kept_counts_the_others(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    """The shop refunds the rest of such a purchase: Stripe's answer alone would make the purchase
    look refunded 3900 of 4900 and keep it granting access; with the charge's refunds listed it is
    refunded in full."""
    journey = _refunded_before_refund_facts(api, standin, engine, "user_before_facts_shop", carried=1000)
    standin.faults.deliver_api_events = False

    answer = ask(api, journey.purchase_id, "rest-1", {})

    assert answer.status_code == 202, answer.text
    assert (answer.json()["refund"]["amount"], answer.json()["purchase"]["status"]) == (3900, "refunded")
    assert purchase_row(engine, journey.purchase_id)["refunded_amount"] == 4900
