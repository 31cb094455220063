"""What a buyer, a bank and Stripe's Dashboard can do to a checkout session of the stand-in.

Each action moves the stored objects on (so that `GET checkout/sessions/<id>` and
`GET payment_intents/<id>` agree with the events, as paystore's return page and reconcile rely on)
and returns the events real Stripe would send for it, in Stripe's shapes; the stand-in delivers
them signed. Only the event types paystore subscribes to are produced.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any


class ActionRefused(Exception):
    """The action does not apply to the session in its current state (the message says why)."""


class PaymentActions:
    """Mixed into StripeStandIn, which provides the stores, `settle`, `event` and `_lock`."""

    _lock: threading.Lock
    sessions: dict[str, dict[str, Any]]
    payment_intents: dict[str, str]
    charges: dict[str, dict[str, Any]]  # payment intent id -> its charge
    disputes: dict[str, dict[str, Any]]  # payment intent id -> its dispute

    settle: Any
    event: Any
    charge: Any
    dispute: Any

    def session_state(self, session_id: str) -> dict[str, Any]:
        """A consistent copy of the session, its intent's status, charge and dispute."""
        with self._lock:
            session = self.sessions.get(session_id)
            if session is None:
                raise KeyError(session_id)
            intent = session.get("payment_intent")
            return {
                "session": copy.deepcopy(session),
                "intent_status": self.payment_intents.get(intent) if intent else None,
                "charge": copy.deepcopy(self.charges.get(intent)) if intent else None,
                "dispute": copy.deepcopy(self.disputes.get(intent)) if intent else None,
            }

    def _require(self, session_id: str, ok: bool, why: str) -> None:
        if not ok:
            raise ActionRefused(f"{session_id}: {why}")

    def _open(self, session_id: str) -> dict[str, Any]:
        state = self.session_state(session_id)
        self._require(session_id, state["session"]["status"] == "open", f"the session is {state['session']['status']}, not open")
        return state

    def _new_charge(self, session: dict[str, Any]) -> dict[str, Any]:
        charge = self.charge(session["payment_intent"], session["amount_total"] or 0, 0, session["currency"] or "usd")
        charge.update(created=int(time.time()), captured=True, paid=True, status="succeeded", livemode=session["livemode"])
        with self._lock:
            self.charges[session["payment_intent"]] = charge
        return copy.deepcopy(charge)

    # ------------------------------------------------------------------ buyer, on the checkout page
    def pay_by_card(self, session_id: str) -> list[dict[str, Any]]:
        self._open(session_id)
        session = self.settle(session_id, payment_status="paid")
        self._new_charge(session)
        return [self.event("checkout.session.completed", session)]

    def pay_by_bank_debit(self, session_id: str) -> list[dict[str, Any]]:
        """Checkout completes, the money is not in yet: complete/unpaid, payment intent processing."""
        self._open(session_id)
        session = self.settle(session_id, payment_status="unpaid", intent_status="processing")
        return [self.event("checkout.session.completed", session)]

    def expire(self, session_id: str) -> list[dict[str, Any]]:
        self._open(session_id)
        return [self.event("checkout.session.expired", self.settle(session_id, status="expired", payment_status="unpaid"))]

    # ------------------------------------------------------------------ the bank, for a bank debit
    def settle_bank_debit(self, session_id: str, *, succeeded: bool) -> list[dict[str, Any]]:
        state = self.session_state(session_id)
        self._require(session_id, state["intent_status"] == "processing", "no bank debit is processing")
        if not succeeded:
            session = self.settle(session_id, payment_status="unpaid", intent_status="requires_payment_method")
            return [self.event("checkout.session.async_payment_failed", session)]
        session = self.settle(session_id, payment_status="paid", intent_status="succeeded")
        self._new_charge(session)
        return [self.event("checkout.session.async_payment_succeeded", session)]

    # ------------------------------------------------------------------ the Dashboard, after payment
    def _paid_charge(self, session_id: str) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
        state = self.session_state(session_id)
        self._require(session_id, state["charge"] is not None, "the session is not paid")
        return state["session"]["payment_intent"], state["charge"], state["dispute"]

    def refund(self, session_id: str, amount: int | None = None) -> list[dict[str, Any]]:
        """Refund `amount` (default: all that is left); the event carries the cumulative total."""
        intent, charge, _ = self._paid_charge(session_id)
        left = charge["amount"] - charge["amount_refunded"]
        amount = left if amount is None else amount
        self._require(session_id, 0 < amount <= left, f"a refund must be between 1 and {left} (what is left)")
        with self._lock:
            stored = self.charges[intent]
            stored["amount_refunded"] += amount
            stored["refunded"] = stored["amount_refunded"] >= stored["amount"]
            charge = copy.deepcopy(stored)
        return [self.event("charge.refunded", charge)]

    def open_dispute(self, session_id: str) -> list[dict[str, Any]]:
        intent, charge, dispute = self._paid_charge(session_id)
        self._require(session_id, dispute is None, "the charge is already disputed (a charge has one dispute)")
        dispute = self.dispute(intent, "needs_response", amount=charge["amount"])
        dispute.update(charge=charge["id"], currency=charge["currency"], created=int(time.time()), livemode=charge["livemode"])
        with self._lock:
            self.disputes[intent] = dispute
            self.charges[intent]["disputed"] = True
        return [self.event("charge.dispute.created", dispute)]

    def close_dispute(self, session_id: str, *, won: bool) -> list[dict[str, Any]]:
        intent, _, dispute = self._paid_charge(session_id)
        self._require(session_id, dispute is not None and dispute["status"] == "needs_response", "no dispute is open")
        with self._lock:
            self.disputes[intent]["status"] = "won" if won else "lost"
            dispute = copy.deepcopy(self.disputes[intent])
        return [self.event("charge.dispute.closed", dispute)]
