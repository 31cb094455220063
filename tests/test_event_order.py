"""The final state depends on which events arrived, never on their order or repetition.

A hypothesis state machine plays Stripe and the operator against paystore over real HTTP and a
real PostgreSQL. Stripe's side only does what Stripe can do (a session is paid, paid later,
fails or expires; a paid charge is refunded or disputed, the dispute closes; a refund may be
pending and settle or fail later), and each of those creates its event. `charge.refunded` comes
as at the pinned API version, without the charge's refunds: paystore lists them from Stripe when
it applies the event, so the reference learns every refund as Stripe has it at that moment.
Deliveries are separate rules, so any generated event can arrive in any order, any number of
times, alone or in a concurrent burst, or not yet (a charge event that arrives before its
purchase is known is answered 503 and retried later, as Stripe does); and `reconcile` may run at
any point. After every step each purchase's status must be what the reference model
(tests/lifecycle_events.expected_status) derives from the facts paystore has been told, so a
failure shrinks to a minimal story. Derandomized and bounded (tests/generated).
"""

from __future__ import annotations

import itertools
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import pytest
import requests
from flask import Flask
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import Engine

from paystore.devtools.postgres import reset_database
from paystore.devtools.processes import wait_until
from paystore.devtools.standin import StripeStandIn
from paystore.extension import Paystore
from paystore.services.purchasing.reconcile import reconcile
from tests.generated import bounded
from tests.lifecycle_events import Purchase, deliver_like_stripe, expected_status
from tests.support.api import Api
from tests.support.database import count, purchase_row
from tests.support.negative_controls import remove_the_lock_and_meet_before_applying

_buyers = itertools.count()
PAID = ("paid", "async_ok")
REFUND_ORDER = {"requires_action": 0, "pending": 1, "succeeded": 2, "failed": 3, "canceled": 3}
RETRIED_BY_STRIPE = ("purchase_not_yet_known", "lock_timeout")


@dataclass
class Story:
    """One purchase: what Stripe has done and generated, and what paystore has been told."""

    purchase: Purchase
    legacy: bool
    mismatch: bool
    stripe: str = "open"  # open, paid, unpaid (delayed, processing), async_ok, async_failed, expired
    refunds: dict[str, tuple[int, str]] = field(default_factory=dict)  # Stripe's refunds: id -> (amount, status)
    dispute: str | None = None  # open, won, lost
    generated: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    told: set[str] = field(default_factory=set)  # facts paystore has acknowledged
    refunds_told: dict[str, str] = field(default_factory=dict)  # refund id -> the latest status paystore took
    acked: set[str] = field(default_factory=set)  # event ids answered 2xx
    waiting: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # answered 503: Stripe retries

    def next_moves(self) -> list[str]:
        """What Stripe can do next: pay (now or later) or expire an open session, settle a
        delayed payment, refund (in part, then in full) or dispute a paid charge."""
        moves = {
            "open": ["completed_paid", "completed_unpaid", "expired"],
            "unpaid": ["async_succeeded", "async_failed"],
        }.get(self.stripe, [])
        if self.stripe in PAID:
            moves += ["refund_part", "refund_pending", "refund_rest"] if self.left_to_refund() else []
            moves += ["refund_settles"] if any(s == "pending" for _, s in self.refunds.values()) else []
            moves += ["refund_fails"] if any(s in ("succeeded", "pending") for _, s in self.refunds.values()) else []
            moves += {None: ["dispute_created"], "open": ["dispute_won", "dispute_lost"]}.get(self.dispute, [])
        return moves

    def left_to_refund(self) -> int:
        return self.purchase.amount - sum(a for a, s in self.refunds.values() if s not in ("failed", "canceled"))

    def learn(self, kind: str, event: dict[str, Any], *, applied: bool = True) -> None:
        """What paystore now knows, once it took the event: a refund's report; for a charge's
        `charge.refunded` (no list at the pinned version), every refund of the charge as Stripe has
        it now, which paystore lists when it applies the event (not when it is a duplicate)."""
        obj = event["data"]["object"]
        if kind == "charge_refunded":
            assert "refunds" not in obj
            reports = [{"id": rid, "status": status} for rid, (_, status) in self.refunds.items()] if applied else []
        else:
            reports = [obj] if kind == "refund_event" else []
        for report in reports:
            known = self.refunds_told.get(report["id"])
            if known is None or REFUND_ORDER[report["status"]] > REFUND_ORDER[known]:
                self.refunds_told[report["id"]] = report["status"]
        if kind not in ("charge_refunded", "refund_event"):
            self.told.add(kind)

    def refunded_told(self) -> int:
        return sum(self.refunds[rid][0] for rid, s in self.refunds_told.items() if s not in ("failed", "canceled"))

    def expected(self) -> str:
        """The reference model: the status the facts paystore has been told lead to."""
        kinds = self.told | ({"refund_full"} if self.refunded_told() >= self.purchase.amount else set())
        return expected_status(kinds, self.mismatch)

    def generate(self, kind: str) -> None:
        changes: dict[str, Any] = {}
        if kind in Purchase.SESSION_EVENTS:
            if self.mismatch:
                changes["amount_total"] = self.purchase.amount + 1
            if self.legacy:
                changes["metadata"] = {}
        self.generated.append((kind, self.purchase.event(kind, **changes) if changes else self.purchase.event(kind)))


class LifecycleMachine(RuleBasedStateMachine):
    api: ClassVar[Api]
    standin: ClassVar[StripeStandIn]
    engine: ClassVar[Engine]
    app: ClassVar[Flask]

    def __init__(self) -> None:
        super().__init__()
        reset_database(self.engine)
        self.standin.reset()
        self.standin.faults.deliver_api_events = False  # the machine delivers every event itself
        self.all: list[Story] = []

    # ------------------------------------------------------------ the buyer and Stripe
    @precondition(lambda self: len(self.all) < 2)
    @rule(legacy=st.booleans(), mismatch=st.booleans())
    def checkout(self, legacy: bool, mismatch: bool) -> None:
        purchase = Purchase.checkout(self.api, self.standin, f"buyer_{next(_buyers)}")
        if mismatch:  # Stripe's own copy charges another amount, for reconcile to see too
            self.standin.sessions[purchase.session["id"]]["amount_total"] = purchase.amount + 1
        self.all.append(Story(purchase, legacy, mismatch))

    @precondition(lambda self: any(s.next_moves() for s in self.all))
    @rule(data=st.data())
    def stripe_moves(self, data: st.DataObject) -> None:
        """One thing Stripe can do next for one purchase, and the event it creates."""
        story = data.draw(st.sampled_from([s for s in self.all if s.next_moves()]), label="story")
        move = data.draw(st.sampled_from(story.next_moves()), label="move")
        session_id = story.purchase.session["id"]
        if move in ("completed_paid", "completed_unpaid"):
            session = self.standin.settle(session_id, payment_status="paid" if move == "completed_paid" else "unpaid")
            story.purchase.payment_intent = session["payment_intent"]
            story.stripe = "paid" if move == "completed_paid" else "unpaid"
        elif move == "async_succeeded":
            self.standin.settle(session_id, payment_status="paid")
            story.stripe = "async_ok"
        elif move == "async_failed":
            self.standin.settle(session_id, payment_status="unpaid", intent_status="requires_payment_method")
            story.stripe = "async_failed"
        elif move == "expired":
            self.standin.settle(session_id, status="expired", payment_status="unpaid")
            story.stripe = "expired"
        elif move in ("refund_part", "refund_pending", "refund_rest"):
            left = story.left_to_refund()
            amount = left if move == "refund_rest" else max(1, left // 2)
            status = "pending" if move == "refund_pending" else "succeeded"
            self._refunded(story, self.standin.actions.refund(session_id, amount, status=status))
            return
        elif move in ("refund_fails", "refund_settles"):
            act = self.standin.actions.fail_refund if move == "refund_fails" else self.standin.actions.settle_refund
            events = act(session_id)
            refund = events[0]["data"]["object"]
            story.refunds[refund["id"]] = (refund["amount"], refund["status"])
            story.generated += [("refund_event", event) for event in events]
            return
        else:
            story.dispute = {"dispute_created": "open", "dispute_won": "won", "dispute_lost": "lost"}[move]
        story.generate(move)

    def _refunded(self, story: Story, events: list[dict[str, Any]]) -> None:
        refund = events[0]["data"]["object"]
        story.refunds[refund["id"]] = (refund["amount"], refund["status"])
        story.generated += [("refund_event", events[0]), ("charge_refunded", events[1])]

    @precondition(lambda self: any(s.stripe in PAID and s.left_to_refund() for s in self.all))
    @rule(data=st.data(), rest=st.booleans())
    def shop_refunds(self, data: st.DataObject, rest: bool) -> None:
        """The shop refunds through paystore: applied from Stripe's answer at once, its events later."""
        story = data.draw(st.sampled_from([s for s in self.all if s.stripe in PAID and s.left_to_refund()]), label="story")
        left = story.left_to_refund()
        amount = left if rest else max(1, left // 2)
        seen = set(self.standin.state.events)
        answer = self.api.post(f"/purchases/{story.purchase.purchase_id}/refunds", {"amount": amount},
                               headers={"Idempotency-Key": f"shop-{next(_buyers)}"})
        # paystore refunds what it knows is paid and left (Stripe may know more than it was told yet)
        if story.expected() not in ("completed", "disputed"):
            expected_status_code = 409
        elif amount > story.purchase.amount - story.refunded_told():
            expected_status_code = 400
        else:
            expected_status_code = 202
        assert answer.status_code == expected_status_code, answer.text
        if answer.status_code != 202:
            return
        refund = answer.json()["refund"]
        story.refunds[refund["id"]] = (refund["amount"], refund["status"])
        story.learn("refund_event", {"data": {"object": refund}})
        new = [e for eid, e in self.standin.state.events.items() if eid not in seen]
        story.generated += [("refund_event" if e["type"] == "refund.created" else "charge_refunded", e) for e in new]

    # ------------------------------------------------------------ deliveries
    def _answered(self, story: Story, kind: str, event: dict[str, Any], answer: requests.Response) -> None:
        if answer.status_code == 503 and answer.json()["error"]["code"] in RETRIED_BY_STRIPE:
            story.waiting.append((kind, event))
            return
        assert answer.status_code == 200, (kind, answer.status_code, answer.text)
        story.acked.add(event["id"])
        story.learn(kind, event, applied=answer.json()["outcome"] != "duplicate")

    @precondition(lambda self: any(s.generated for s in self.all))
    @rule(data=st.data())
    def deliver_one(self, data: st.DataObject) -> None:
        """Any generated event, new or already delivered (a redelivery with the same id)."""
        story = data.draw(st.sampled_from([s for s in self.all if s.generated]), label="story")
        kind, event = data.draw(st.sampled_from(story.generated), label="event")
        answer = self.standin.deliver(event)
        if event["id"] in story.acked:
            assert answer.json().get("outcome") == "duplicate", (kind, answer.text)
        self._answered(story, kind, event, answer)

    @precondition(lambda self: any(s.generated for s in self.all))
    @rule(data=st.data())
    def deliver_burst(self, data: st.DataObject) -> None:
        """Several events of several purchases at once, some twice, in a drawn order."""
        pool = [(s, kind, event) for s in self.all for kind, event in s.generated]
        burst = data.draw(st.lists(st.sampled_from(pool), min_size=2, max_size=8), label="burst")
        acked_before = {event_id for s in self.all for event_id in s.acked}
        with ThreadPoolExecutor(len(burst)) as threads:
            answers = list(threads.map(lambda item: self.standin.deliver(item[2]), burst))
        applied = Counter(
            event["id"] for (_, _, event), answer in zip(burst, answers, strict=True)
            if answer.status_code == 200 and answer.json()["outcome"] != "duplicate"
        )
        twice = {event_id: n for event_id, n in applied.items() if n > 1 or event_id in acked_before}
        assert not twice, f"events applied more than once: {twice}"
        for (story, kind, event), answer in zip(burst, answers, strict=True):
            self._answered(story, kind, event, answer)

    # Not `any(s.waiting)`: what waits depends on the timing within a burst, and rules that
    # are enabled must not depend on timing, or hypothesis cannot replay a story.
    @precondition(lambda self: any(s.generated for s in self.all))
    @rule()
    def stripe_retries(self) -> None:
        for story in self.all:
            retry, story.waiting = story.waiting, []
            for kind, event in retry:
                answer = self.standin.deliver(event)
                if event["id"] in story.acked:
                    assert answer.json().get("outcome") == "duplicate", (kind, answer.text)
                self._answered(story, kind, event, answer)

    @precondition(lambda self: self.all)
    @rule()
    def operator_reconciles(self) -> None:
        ext = Paystore.of(self.app)
        with ext.session_factory() as db:
            rows = reconcile(db, ext.gateway, ext.settings, timedelta(0))
        assert not [row for row in rows if row.failed], rows
        learned = {"paid": "completed_paid", "async_ok": "completed_paid", "unpaid": "completed_unpaid",
                   "async_failed": "async_failed", "expired": "expired"}
        for story in self.all:
            if story.expected() in ("pending", "awaiting_payment") and story.stripe in learned:
                story.told.add(learned[story.stripe])

    # ------------------------------------------------------------ what must hold after every step
    @invariant()
    def each_status_is_what_the_reference_model_derives(self) -> None:
        for story in self.all:
            row = purchase_row(self.engine, story.purchase.purchase_id)
            expected = story.expected()
            assert row["status"] == expected, (
                f"{story.purchase.purchase_id}: {row['status']} != {expected} after {sorted(story.told)}, "
                f"refunds {story.refunds_told} (legacy={story.legacy}, mismatch={story.mismatch})"
            )
            assert row["refunded_amount"] == story.refunded_told(), (row["refunded_amount"], story.refunds_told)

    @invariant()
    def every_acknowledged_event_is_recorded_once_and_finished(self) -> None:
        acked = sum(len(s.acked) for s in self.all)
        assert count(self.engine, "SELECT count(*) FROM stripe_events") == acked
        assert count(self.engine, "SELECT count(*) FROM stripe_events WHERE outcome IS NULL OR outcome = 'failed'") == 0


# Passing takes seconds; a failure is shrunk over HTTP, which hypothesis bounds at 5 minutes.
@pytest.mark.timeout(900)
def test_any_order_any_duplicates_concurrently_reconcile_anytime_same_final_state(
    api: Api, standin: StripeStandIn, engine: Engine, live_app: Flask
) -> None:
    LifecycleMachine.api, LifecycleMachine.standin, LifecycleMachine.engine = api, standin, engine
    LifecycleMachine.app = live_app
    run_state_machine_as_test(LifecycleMachine, settings=bounded(20, stateful_step_count=40))


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
