"""The final state depends on which events arrived, never on their order or repetition.

Many purchases, each with a realistic set of Stripe events; every set is shuffled, events are
redelivered at random, all purchases' deliveries are interleaved and sent concurrently, and a
5xx is retried later as Stripe does. A reference model written from docs/DESIGN.md's state table
says what each purchase must end as. The seed is printed on failure; set PAYSTORE_TEST_SEED to
replay a run.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.lifecycle_events import (
    Purchase,
    deliver_like_stripe,
    shuffled_with_duplicates,
)
from paystore.devtools.stripe_standin import StripeStandIn
from tests.support import Api, count, purchase_row, remove_the_lock_and_meet_before_applying, wait_until

SCENARIOS = [
    set(),
    {"completed_paid"},
    {"completed_paid", "refund_full"},
    {"completed_paid", "refund_partial"},
    {"completed_paid", "refund_partial", "refund_full"},
    {"completed_paid", "dispute_created"},
    {"completed_paid", "dispute_created", "dispute_won"},
    {"completed_paid", "dispute_created", "dispute_lost"},
    {"completed_paid", "dispute_lost"},
    {"completed_paid", "dispute_created", "dispute_won", "refund_full"},
    {"completed_paid", "refund_full", "dispute_created", "dispute_lost"},
    {"completed_unpaid"},
    {"completed_unpaid", "async_succeeded"},
    {"completed_unpaid", "async_failed"},
    {"completed_unpaid", "async_succeeded", "refund_full"},
    {"completed_unpaid", "async_succeeded", "dispute_created"},
    {"async_succeeded"},
    {"expired"},
]
MISMATCHED = [{"completed_paid"}, {"completed_unpaid", "async_succeeded"}, {"completed_paid", "refund_partial"}]
LEGACY = [
    {"completed_paid", "refund_full", "dispute_created"},
    {"completed_unpaid", "async_succeeded", "refund_full"},
    {"completed_unpaid", "async_failed"},
    {"expired"},
]


def expected_status(kinds: set[str], mismatch: bool) -> str:
    """docs/DESIGN.md's state table, read as a function of the set of events."""
    if mismatch and kinds & {"completed_paid", "completed_unpaid", "async_succeeded"}:  # a completion
        return "needs_review"
    if kinds & {"completed_paid", "async_succeeded"}:
        if "dispute_lost" in kinds:
            return "dispute_lost"
        if "refund_full" in kinds:
            return "refunded"
        if "dispute_created" in kinds and "dispute_won" not in kinds:
            return "disputed"
        return "completed"
    if "async_failed" in kinds:
        return "failed"
    if "completed_unpaid" in kinds:
        return "awaiting_payment"
    if "expired" in kinds:
        return "expired"
    return "pending"


@pytest.mark.parametrize("round_number", range(3))
def test_any_order_any_duplicates_concurrently_same_final_state(
    api: Api, standin: StripeStandIn, engine: Engine, round_number: int
) -> None:
    seed = int(os.environ.get("PAYSTORE_TEST_SEED") or random.SystemRandom().randrange(2**32)) + round_number
    rng = random.Random(seed)
    # (events, mismatched amount, legacy: sessions without metadata.purchase_id)
    cases = [(kinds, False, False) for kinds in SCENARIOS]
    cases += [(kinds, True, False) for kinds in MISMATCHED]
    cases += [(kinds, False, True) for kinds in LEGACY]
    deliveries, expectations, distinct_events = [], {}, 0
    for n, (kinds, mismatch, legacy) in enumerate(cases):
        purchase = Purchase.checkout(api, standin, f"buyer_{round_number}_{n}")
        changes = {"amount_total": purchase.amount + 1} if mismatch else {}
        if legacy:
            changes["metadata"] = {}
        events = [
            purchase.event(kind, **changes) if kind in Purchase.SESSION_EVENTS else purchase.event(kind)
            for kind in sorted(kinds)
        ]
        distinct_events += len(events)
        deliveries += shuffled_with_duplicates(rng, events)
        expectations[purchase.purchase_id] = (expected_status(kinds, mismatch), sorted(kinds), mismatch, legacy)
    rng.shuffle(deliveries)

    deliver_like_stripe(standin, deliveries, workers=8)

    wrong = {
        pid: (purchase_row(engine, pid)["status"], expected)
        for pid, expected in expectations.items()
        if purchase_row(engine, pid)["status"] != expected[0]
    }
    assert not wrong, f"seed {seed}: {wrong}"
    assert count(engine, "SELECT count(*) FROM stripe_events") == distinct_events, f"seed {seed}"
    assert count(engine, "SELECT count(*) FROM stripe_events WHERE outcome IS NULL") == 0


def test_negative_control_without_the_lock_concurrent_events_lose_an_update(
    api: Api, standin: StripeStandIn, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the purchase lock, two handlers derive the status from the same stale read.

    A dispute and a full refund of one paid purchase arrive together. Both handlers read the
    completed purchase; the refund commits first; the dispute handler then writes `disputed`
    from its stale read, although the purchase is refunded in full. The barrier and the
    wait for the refund's commit force that interleaving; with the lock it cannot happen.
    """
    purchase = Purchase.checkout(api, standin, "buyer_nc")
    assert standin.deliver(purchase.event("completed_paid")).json()["outcome"] == "completed"

    def dispute_writes_last(learn: Any) -> None:
        if "learn_from_dispute" in learn.__qualname__:
            wait_until(lambda: purchase_row(engine, purchase.purchase_id)["refunded_amount"] == purchase.amount)

    remove_the_lock_and_meet_before_applying(monkeypatch, parties=2, then=dispute_writes_last)

    deliver_like_stripe(standin, [purchase.event("dispute_created"), purchase.event("refund_full")], workers=2)

    row = purchase_row(engine, purchase.purchase_id)
    assert expected_status({"completed_paid", "dispute_created", "refund_full"}, False) == "refunded"
    assert (row["status"], row["refunded_amount"]) == ("disputed", purchase.amount), "the lost update did not show"
