"""Building the Stripe events of one purchase's life, and delivering them as Stripe does."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from paystore.devtools.standin import StripeStandIn, stripe_id
from paystore.devtools.standin.objects import refund
from tests.support.api import Api


@dataclass
class Purchase:
    """A purchase created through POST /checkout, and the Stripe objects of its future."""

    standin: StripeStandIn
    purchase_id: str
    session: dict[str, Any]
    amount: int
    payment_intent: str = field(default_factory=lambda: stripe_id("pi"))
    dispute_id: str = field(default_factory=lambda: stripe_id("dp"))

    @classmethod
    def checkout(cls, api: Api, standin: StripeStandIn, user_id: str, program_id: str = "prog_py101") -> Purchase:
        response = api.checkout(user_id, program_id)
        assert response.status_code == 201, response.text
        body = response.json()
        return cls(standin, body["purchase_id"], copy.deepcopy(standin.sessions[body["stripe_session_id"]]), body["amount"])

    def _session(self, **changes: Any) -> dict[str, Any]:
        session = copy.deepcopy(self.session)
        session.update(url=None, payment_intent=self.payment_intent, **changes)
        return session

    SESSION_EVENTS = {
        "completed_paid": ("checkout.session.completed", "complete", "paid"),
        "completed_unpaid": ("checkout.session.completed", "complete", "unpaid"),
        "async_succeeded": ("checkout.session.async_payment_succeeded", "complete", "paid"),
        "async_failed": ("checkout.session.async_payment_failed", "complete", "unpaid"),
        "expired": ("checkout.session.expired", "expired", "unpaid"),
    }

    def event(self, kind: str, **session_changes: Any) -> dict[str, Any]:
        """The event of this kind; `session_changes` alter the session of a session event."""
        s = self.standin
        if kind in self.SESSION_EVENTS:
            event_type, status, payment_status = self.SESSION_EVENTS[kind]
            session = self._session(status=status, payment_status=payment_status, **session_changes)
            if kind == "expired":
                session["payment_intent"] = None
            event = s.event(event_type, session)
            # The envelope is in the purchase's mode even when a test alters the session's.
            event["livemode"] = self.session["livemode"]
            return event
        if kind in ("refund_partial", "refund_full"):
            # With its refunds listed (as an endpoint of an older API version sends it): a quarter,
            # then the rest; the refunded amount is what the refunds add up to.
            charge = s.charge(self.payment_intent, self.amount, self.amount // 4 if kind == "refund_partial" else self.amount)
            parts = [self.amount // 4] + ([self.amount - self.amount // 4] if kind == "refund_full" else [])
            charge["refunds"]["data"] = [dict(refund(charge, part), id=f"re_{self.dispute_id[3:]}_{i}")
                                         for i, part in enumerate(parts)]
            return s.event("charge.refunded", charge)
        disputes = {"dispute_created": "needs_response", "dispute_won": "won", "dispute_lost": "lost"}
        if kind in disputes:
            event_type = "charge.dispute.created" if kind == "dispute_created" else "charge.dispute.closed"
            return s.event(event_type, s.dispute(self.payment_intent, disputes[kind], self.dispute_id, self.amount))
        raise ValueError(kind)


def deliver_like_stripe(
    standin: StripeStandIn, events: Iterable[dict[str, Any]], *, workers: int = 8, max_rounds: int = 40
) -> list[requests.Response]:
    """Deliver concurrently; a non-2xx answer is retried later, as Stripe does. Returns the
    final (2xx) answer of every delivery, and fails if some delivery never succeeds."""
    pending = list(events)
    done: list[requests.Response] = []
    with ThreadPoolExecutor(workers) as pool:
        for _ in range(max_rounds):
            answers = list(pool.map(standin.deliver, pending))
            done += [a for a in answers if 200 <= a.status_code < 300]
            failed = [e for e, a in zip(pending, answers, strict=True) if not 200 <= a.status_code < 300]
            unexpected = [a for a in answers if a.status_code not in range(200, 300) and a.status_code != 503]
            assert not unexpected, [a.text for a in unexpected]
            if not failed:
                return done
            pending = failed
            time.sleep(0.02)
    raise AssertionError(f"{len(pending)} deliveries never succeeded")


def expected_status(kinds: set[str], mismatch: bool) -> str:
    """The reference model: docs/DESIGN.md's state table, read as a function of the *set* of
    facts paystore has learned (by webhook or reconcile), whatever their order."""
    if mismatch and kinds & {"completed_paid", "completed_unpaid", "async_succeeded"}:  # a completion
        return "needs_review"
    if kinds & {"completed_paid", "async_succeeded"}:
        if "dispute_lost" in kinds and "dispute_won" not in kinds:  # a won appeal undoes a loss
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
