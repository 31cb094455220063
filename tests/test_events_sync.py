"""No event missed: with the webhook endpoint down for a whole story (nothing delivered at all,
including a refund and a dispute of a purchase whose checkout row rolled back), one
`paystore events sync` brings every purchase to the state the webhooks would have produced."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine

from paystore.devtools.http import free_port
from paystore.devtools.standin import StripeStandIn
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.processes import paystore_cli


def _story_with_the_endpoint_down(api: Api, standin: StripeStandIn) -> tuple[str, str]:
    live = standin.webhook_url
    standin.webhook_url = f"http://127.0.0.1:{free_port()}/webhooks/stripe"  # nobody listens: every delivery fails
    kept = api.checkout("user_down_a").json()
    act = standin.actions
    for step in (act.pay_by_card, lambda s: act.refund(s, 1000), act.open_dispute):
        standin.deliver_and_record(kept["stripe_session_id"], step(kept["stripe_session_id"]))
    standin.faults.create_delay_s = 2.5  # past paystore's Stripe timeout: the checkout rolls back, Stripe kept it
    assert api.checkout("user_down_b").status_code == 502
    standin.faults.create_delay_s = 0
    [lost] = [s for s in standin.sessions.values() if s["metadata"]["user_id"] == "user_down_b"]
    for step in (act.pay_by_card, lambda s: act.refund(s, 4900), act.open_dispute):
        standin.deliver_and_record(lost["id"], step(lost["id"]))
    assert all(not taken for taken in standin.state.delivered.values())
    standin.webhook_url = live
    return kept["purchase_id"], lost["metadata"]["purchase_id"]


def test_one_events_sync_heals_a_story_no_webhook_reached(
    api: Api, standin: StripeStandIn, engine: Engine, cli_env: dict[str, str]
) -> None:
    kept, lost = _story_with_the_endpoint_down(api, standin)
    assert purchase_row(engine, kept)["status"] == "pending" and purchase_row(engine, lost) is None

    with ThreadPoolExecutor(2) as pool:  # twice at once: safe
        runs = list(pool.map(lambda _: paystore_cli(cli_env, "events", "sync", "--since", "1h", "--undelivered-only"),
                             range(2)))

    assert [r.returncode for r in runs] == [0, 0], [r.stdout + r.stderr for r in runs]
    events = len(standin.state.events)
    assert count(engine, "SELECT count(*) FROM stripe_events") == events  # each recorded once
    a, b = purchase_row(engine, kept), purchase_row(engine, lost)
    assert (a["status"], a["refunded_amount"], a["dispute"]) == ("disputed", 1000, "open")
    assert (b["status"], b["refunded_amount"], b["dispute"]) == ("refunded", 4900, "open")
    # Exactly what the webhooks would have made: delivered now, every event is a duplicate.
    redelivered = [standin.deliver(event).json()["outcome"] for event in standin.state.events.values()]
    assert set(redelivered) == {"duplicate"}
    again = paystore_cli(cli_env, "events", "sync", "--since", "1h")
    assert again.returncode == 0 and f"{events} events listed: 0 applied now, {events} already recorded" in again.stdout


def test_sync_says_when_the_window_reaches_past_what_stripe_keeps(cli_env: dict[str, str], standin: StripeStandIn) -> None:
    result = paystore_cli(cli_env, "events", "sync", "--since", "45d")

    assert result.returncode == 0, result.stderr
    assert "Stripe keeps 30 days of events" in result.stderr


def test_sync_exits_non_zero_when_an_event_cannot_be_applied(
    api: Api, standin: StripeStandIn, cli_env: dict[str, str]
) -> None:
    """A refund of a payment paystore never heard of: not applicable, and the table says so."""
    orphan = standin.charge("pi_test_unknown", 4900, 4900)
    standin.state.record_event(standin.event("charge.refunded", orphan), taken=False)

    result: subprocess.CompletedProcess[str] = paystore_cli(cli_env, "events", "sync", "--since", "1h")

    assert result.returncode == 1 and "PurchaseNotYetKnown" in result.stdout, result.stdout + result.stderr
