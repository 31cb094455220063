"""The lifecycle rules alone: every row of the state table run against `lifecycle.apply`, with
events built from Stripe's published object shapes (the stand-in's builders, no server)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paystore.devtools.standin import objects
from paystore.domain import dispute, lifecycle, refund
from paystore.domain.outcome import Outcome
from paystore.domain.purchase import Purchase, PurchaseStatus
from paystore.stripe.objects import Charge, CheckoutSession, Dispute
from tests.generated import bounded
from tests.lifecycle_events import expected_status
from tests.lifecycle_table import BACKWARDS, MISMATCHES, STATE_TABLE

AMOUNT = 4900
INTENT = "pi_test_unit"
SESSION_KINDS = {
    "completed_paid": (lifecycle.SESSION_COMPLETED, "complete", "paid"),
    "completed_unpaid": (lifecycle.SESSION_COMPLETED, "complete", "unpaid"),
    "async_succeeded": (lifecycle.SESSION_ASYNC_SUCCEEDED, "complete", "paid"),
    "async_failed": (lifecycle.SESSION_ASYNC_FAILED, "complete", "unpaid"),
    "expired": (lifecycle.SESSION_EXPIRED, "expired", "unpaid"),
}
DISPUTES = {"dispute_created": "needs_response", "dispute_won": "won", "dispute_lost": "lost"}


def pending() -> Purchase:
    return Purchase.pending(id=uuid.uuid4(), user_id="user_1", program_id="prog_py101", amount=AMOUNT, currency="usd",
                            livemode=False, stripe_session_id="cs_test_unit")


def learn(kind: str, purchase: Purchase, **session_changes: Any) -> Callable[[Purchase], None]:
    """What the event of this kind teaches, parsed from Stripe's shapes as the webhook parses it."""
    assert kind in SESSION_KINDS or kind in DISPUTES
    if kind in SESSION_KINDS:
        event_type, status, payment_status = SESSION_KINDS[kind]
        session = objects.checkout_session({"line_items": [{"price_data": {"currency": "usd", "unit_amount": AMOUNT}}],
                                            "metadata": {"purchase_id": str(purchase.id)}}, "http://standin")
        session.update(id="cs_test_unit", status=status, payment_status=payment_status, url=None,
                       payment_intent=None if kind == "expired" else INTENT, **session_changes)
        return lifecycle.learn_from_session(event_type, CheckoutSession.from_dict(session), stripe_livemode=False)
    return dispute.learn_from_dispute(Dispute.from_dict(objects.dispute(INTENT, DISPUTES[kind], "dp_test_unit", AMOUNT)))


_KNOWN: dict[Any, dict[str, refund.Refund]] = {}  # each purchase's refunds, as the store would keep them


def apply(purchase: Purchase, kind: str, **session_changes: Any) -> Outcome:
    if kind in ("refund_partial", "refund_full"):  # charge.refunded with its refunds: a quarter, then the rest
        parts = [AMOUNT // 4] + ([AMOUNT - AMOUNT // 4] if kind == "refund_full" else [])
        charge = objects.charge(INTENT, AMOUNT, sum(parts))
        charge["refunds"]["data"] = [dict(objects.refund(charge, part), id=f"re_test_unit_{i}") for i, part in enumerate(parts)]
        parsed = Charge.from_dict(charge)
        seen = [refund.Refund(r.id, purchase.id, r.amount, refund.RefundStatus(r.status)) for r in parsed.refunds]
        known = _KNOWN.setdefault(purchase.id, {})
        return refund.apply_refunds(purchase, known, seen, parsed.amount_refunded, cause=f"unit {kind}")[0]
    return lifecycle.apply(purchase, learn(kind, purchase, **session_changes), cause=f"unit {kind}")


@pytest.mark.parametrize(("before", "kind", "outcome", "status"), STATE_TABLE)
def test_state_table_row(before: list[str], kind: str, outcome: str, status: str) -> None:
    purchase = pending()
    for earlier in before:
        apply(purchase, earlier)

    assert apply(purchase, kind) == outcome
    assert purchase.status == status


@pytest.mark.parametrize(("happened", "late", "status"), BACKWARDS)
def test_late_event_never_moves_a_purchase_backwards(happened: list[str], late: str, status: str) -> None:
    purchase = pending()
    for kind in happened:
        apply(purchase, kind)
    facts = [getattr(purchase, name) for name in Purchase.__slots__]

    assert apply(purchase, late) == Outcome.STALE
    assert purchase.status == status
    assert [getattr(purchase, name) for name in Purchase.__slots__] == facts


@pytest.mark.parametrize(("changes", "reason"), MISMATCHES)
def test_a_completion_that_does_not_match_needs_review_and_grants_nothing(changes: dict, reason: str) -> None:
    purchase = pending()

    assert apply(purchase, "completed_paid", **changes) == Outcome.NEEDS_REVIEW
    assert reason in (purchase.review_reason or "") and purchase.completed_at is None
    assert apply(purchase, "async_succeeded") == Outcome.STALE


def test_a_transition_to_failed_is_named_apart_from_a_handler_failure() -> None:
    purchase = pending()

    assert apply(purchase, "async_failed") == Outcome.PAYMENT_FAILED != Outcome.FAILED
    assert purchase.status == PurchaseStatus.FAILED


PAYMENT_PATHS = [(), ("expired",), ("completed_paid",), ("completed_unpaid",), ("completed_unpaid", "async_succeeded"),
                 ("completed_unpaid", "async_failed")]
REFUND_PATHS = [(), ("refund_partial",), ("refund_full",), ("refund_partial", "refund_full")]
DISPUTE_PATHS = [(), ("dispute_created",), ("dispute_created", "dispute_won"), ("dispute_created", "dispute_lost")]


@st.composite
def deliveries(draw: st.DrawFn) -> list[str]:
    """What Stripe did to one purchase (a possible history), and which of its events arrived, each
    any number of times (a lost one never), in any order."""
    happened = list(draw(st.sampled_from(PAYMENT_PATHS)))
    if {"completed_paid", "async_succeeded"} & set(happened):
        happened += [*draw(st.sampled_from(REFUND_PATHS)), *draw(st.sampled_from(DISPUTE_PATHS))]
    if not happened:
        return []
    return draw(st.permutations(draw(st.lists(st.sampled_from(happened), max_size=10))))


@bounded(500)  # in-process and pure: 500 stories take about a second
@given(deliveries())
def test_any_order_and_any_repetition_ends_where_the_reference_model_says(kinds: list[str]) -> None:
    """The final status depends on which events arrived, never on their order."""
    purchase = pending()
    for kind in kinds:
        apply(purchase, kind)

    assert purchase.status == expected_status(set(kinds), mismatch=False)


def test_an_appeal_won_beside_a_newer_active_purchase_goes_to_review_not_back_to_completed() -> None:
    """dispute_lost is not active: the user may have bought again. Winning the appeal must not
    make a second active purchase of the program; the clash check says so and only then is asked."""
    purchase = pending()
    apply(purchase, "completed_paid")
    apply(purchase, "dispute_lost")
    asked: list[PurchaseStatus] = []

    def clash(p: Purchase) -> str:
        asked.append(p.status)
        return "would be completed again while purchase P2 is completed"

    outcome = lifecycle.apply(purchase, learn("dispute_won", purchase), cause="unit", clash=clash)

    assert (outcome, purchase.status, asked) == (Outcome.NEEDS_REVIEW, PurchaseStatus.NEEDS_REVIEW, [PurchaseStatus.COMPLETED])
    assert lifecycle.apply(purchase, learn("dispute_won", purchase), cause="unit", clash=clash) == Outcome.STALE
    assert asked == [PurchaseStatus.COMPLETED]  # needs_review is not active: nothing to ask again


def test_without_a_clash_an_appeal_won_restores_the_purchase() -> None:
    purchase = pending()
    apply(purchase, "completed_paid")
    apply(purchase, "dispute_lost")

    assert lifecycle.apply(purchase, learn("dispute_won", purchase), cause="unit", clash=lambda p: None) == Outcome.COMPLETED
