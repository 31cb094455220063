"""Disputes in full (paystore.domain.dispute): an inquiry changes nothing, a chargeback keeps access
until it is lost, a lost one revokes it, a won one (or an appeal that wins) restores it; and the
optional refund on Radar's early fraud warning, made once whatever the deliveries."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine

from paystore.devtools.standin import StripeStandIn
from tests.lifecycle_events import Purchase
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.refund_journeys import refund_creates


def dispute_event(standin: StripeStandIn, journey: Purchase, event_type: str, status: str) -> dict:
    return standin.event(event_type, standin.dispute(journey.payment_intent, status, journey.dispute_id, journey.amount))


def access(api: Api, user_id: str) -> bool:
    return api.get(f"/users/{user_id}/programs/prog_py101/access").json()["access"]


@pytest.mark.parametrize(("story", "status", "granted"), [
    # an inquiry: the bank asks, no money moves
    ([("charge.dispute.created", "warning_needs_response"), ("charge.dispute.updated", "warning_under_review"),
      ("charge.dispute.closed", "warning_closed")], "completed", True),
    # a chargeback: access kept while it is open
    ([("charge.dispute.created", "needs_response"), ("charge.dispute.funds_withdrawn", "needs_response"),
      ("charge.dispute.updated", "under_review")], "disputed", True),
    # lost: access revoked
    ([("charge.dispute.created", "needs_response"), ("charge.dispute.closed", "lost")], "dispute_lost", False),
    # won: the money comes back, and access
    ([("charge.dispute.created", "needs_response"), ("charge.dispute.closed", "won"),
      ("charge.dispute.funds_reinstated", "won")], "completed", True),
    # prevented before it became a chargeback
    ([("charge.dispute.created", "needs_response"), ("charge.dispute.closed", "prevented")], "completed", True),
    # lost, appealed (the money stays with the buyer meanwhile), and the appeal wins
    ([("charge.dispute.closed", "lost"), ("charge.dispute.updated", "appeal_needs_response"),
      ("charge.dispute.updated", "appeal_under_review")], "dispute_lost", False),
    ([("charge.dispute.closed", "lost"), ("charge.dispute.updated", "appeal_under_review"),
      ("charge.dispute.closed", "won")], "completed", True),
], ids=["inquiry", "open", "lost", "won", "prevented", "appealing", "appeal-won"])
def test_every_dispute_status_maps_onto_access(
    api: Api, standin: StripeStandIn, engine: Engine, story: list[tuple[str, str]], status: str, granted: bool
) -> None:
    journey = Purchase.checkout(api, standin, "user_disputed")
    assert standin.deliver(journey.event("completed_paid")).status_code == 200
    events = [dispute_event(standin, journey, event_type, dispute_status) for event_type, dispute_status in story]

    for order in (events, list(reversed(events))):  # any order, and again: the same end
        answers = [standin.deliver(event) for event in order]
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        assert purchase_row(engine, journey.purchase_id)["status"] == status
    assert access(api, "user_disputed") is granted


@pytest.fixture(scope="module")
def warned_shop(make_server_for: Callable[..., str]) -> str:
    return make_server_for(refund_on_early_fraud_warning=True)


def _warning(standin: StripeStandIn, journey: Purchase) -> dict:
    charge = standin.state.charges[journey.payment_intent]
    return standin.event("radar.early_fraud_warning.created", {
        "id": "issfr_test_1", "object": "radar.early_fraud_warning", "actionable": True, "charge": charge["id"],
        "payment_intent": journey.payment_intent, "fraud_type": "made_with_stolen_card", "livemode": False,
        "created": 1_800_000_000})


def _paid_through(standin: StripeStandIn, api: Api, user_id: str) -> Purchase:
    journey = Purchase.checkout(api, standin, user_id)
    session = standin.actions.pay_by_card(journey.session["id"])[0]["data"]["object"]
    journey.payment_intent = session["payment_intent"]
    assert standin.deliver(standin.event("checkout.session.completed", session)).json()["outcome"] == "completed"
    return journey


def test_an_early_fraud_warning_refunds_once_whatever_the_deliveries(
    warned_shop: str, standin: StripeStandIn, engine: Engine
) -> None:
    standin.webhook_url = warned_shop + "/webhooks/stripe"
    standin.faults.deliver_api_events = False
    api = Api(warned_shop)
    journey = _paid_through(standin, api, "user_warned")
    warning = _warning(standin, journey)

    with ThreadPoolExecutor(3) as pool:  # delivered three times, twice at once
        answers = list(pool.map(standin.deliver, [warning, warning]))
    answers.append(standin.deliver(warning))

    assert sorted(a.json()["outcome"] for a in answers) == ["duplicate", "duplicate", "refunded"], [a.text for a in answers]
    refunds = [r for c in standin.state.charges.values() for r in c["refunds"]["data"]]
    assert [(r["amount"], r["reason"], r["metadata"]["early_fraud_warning"]) for r in refunds] == [
        (4900, "fraudulent", "issfr_test_1")]
    assert purchase_row(engine, journey.purchase_id)["status"] == "refunded"


def test_without_the_setting_a_warning_is_recorded_and_refunds_nothing(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    journey = _paid_through(standin, api, "user_warned_off")

    answer = standin.deliver(_warning(standin, journey))

    assert answer.json()["outcome"] == "ignored"
    assert purchase_row(engine, journey.purchase_id)["status"] == "completed"
    assert count(engine, "SELECT count(*) FROM refunds") == 0


def test_a_warning_handled_once_asks_stripe_never_again(warned_shop: str, standin: StripeStandIn, engine: Engine) -> None:
    """The refund fails (the card expired), so the purchase grants again: a redelivery of the
    warning is a duplicate and must not ask Stripe for a second refund."""
    standin.webhook_url = warned_shop + "/webhooks/stripe"
    standin.faults.deliver_api_events = False
    journey = _paid_through(standin, Api(warned_shop), "user_warned_twice")
    warning = _warning(standin, journey)
    assert standin.deliver(warning).json()["outcome"] == "refunded"
    failed = standin.actions.fail_refund(journey.session["id"])
    assert standin.deliver(failed[0]).json()["outcome"] == "completed"

    assert standin.deliver(warning).json()["outcome"] == "duplicate"

    assert refund_creates(standin) == 1
    assert purchase_row(engine, journey.purchase_id)["status"] == "completed"


def test_a_warning_of_the_other_mode_is_recorded_and_asks_stripe_nothing(
    warned_shop: str, standin: StripeStandIn, engine: Engine
) -> None:
    standin.webhook_url = warned_shop + "/webhooks/stripe"
    journey = _paid_through(standin, Api(warned_shop), "user_warned_live")
    warning = _warning(standin, journey)
    warning["livemode"] = True

    assert standin.deliver(warning).json()["outcome"] == "wrong_mode"
    assert refund_creates(standin) == 0


def test_a_warning_whose_refund_stripe_refuses_is_recorded_not_failed(
    warned_shop: str, standin: StripeStandIn, engine: Engine
) -> None:
    """Refunded in full at Stripe already (its events not here yet): Stripe refuses another refund."""
    standin.webhook_url = warned_shop + "/webhooks/stripe"
    journey = _paid_through(standin, Api(warned_shop), "user_warned_refused")
    standin.actions.refund(journey.session["id"])  # not delivered

    answer = standin.deliver(_warning(standin, journey))

    assert (answer.status_code, answer.json()["outcome"]) == (200, "ignored"), answer.text
    assert count(engine, "SELECT count(*) FROM stripe_events WHERE outcome = 'failed'") == 0


def test_an_appeal_won_after_the_user_bought_again_sends_the_old_purchase_to_review(
    api: Api, standin: StripeStandIn, engine: Engine
) -> None:
    first = Purchase.checkout(api, standin, "user_appeal")
    assert standin.deliver(first.event("completed_paid")).json()["outcome"] == "completed"
    assert standin.deliver(dispute_event(standin, first, "charge.dispute.closed", "lost")).json()["outcome"] == "dispute_lost"
    again = Purchase.checkout(api, standin, "user_appeal")
    assert standin.deliver(again.event("completed_paid")).json()["outcome"] == "completed"

    answer = standin.deliver(dispute_event(standin, first, "charge.dispute.closed", "won"))

    assert (answer.status_code, answer.json()["outcome"]) == (200, "needs_review"), answer.text
    assert purchase_row(engine, first.purchase_id)["status"] == "needs_review"
    assert purchase_row(engine, again.purchase_id)["status"] == "completed"
    assert access(api, "user_appeal") is True
