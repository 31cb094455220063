"""What the stand-in remembers (sessions, payment intents, charges, disputes, the calls it got, the
webhooks its pages sent), and the faults a test asks it to inject. One lock guards it all; every
read hands out copies."""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paystore.devtools.standin import objects, pricing


class RefundRefused(Exception):
    """Stripe would refuse this refund (HTTP 400): the message says why."""


@dataclass
class Faults:
    """How the stand-in misbehaves, as a test sets it."""

    # per create call: an HTTP status, "hang" (until reset or 60 s), or "drop" (create the
    # session, then cut the connection without answering: the network failed mid-request)
    create: deque[int | str] = field(default_factory=deque)
    create_delay_s: float = 0.0
    retrieve: dict[str, int] = field(default_factory=dict)  # session id -> HTTP status
    retrieve_delay_s: float = 0.0  # every session read takes this long (reads then overlap)
    # Runs after a session is created, before the create call is answered: e.g. pay the session
    # and deliver its webhook first, the worst timing real Stripe can produce.
    before_create_response: Callable[[dict[str, Any]], None] | None = None
    refund: deque[int] = field(default_factory=deque)  # per refund create call: an HTTP status to answer
    # The events of a refund made through the API go to paystore's webhook right after the answer,
    # as Stripe sends them; a test that delivers them itself turns this off and finds them in
    # `StandInState.events`.
    deliver_api_events: bool = True
    # Runs when a customer create call arrives, before the customer is made (e.g. to make two meet).
    before_create_customer: Callable[[dict[str, Any]], None] | None = None
    release_hung: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of one session and what hangs off it."""

    session: dict[str, Any]
    intent_status: str | None
    charge: dict[str, Any] | None
    dispute: dict[str, Any] | None


class StandInState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, str] = {}  # id -> status
        self.payment_intent_params: dict[str, dict[str, Any]] = {}  # session id -> its payment_intent_data
        self.charges: dict[str, dict[str, Any]] = {}  # payment intent id -> its charge
        self.disputes: dict[str, dict[str, Any]] = {}  # payment intent id -> its dispute
        self.line_items: dict[str, dict[str, Any]] = {}  # session id -> its one line item, as the page shows it
        self.choices: dict[str, dict[str, str | None]] = {}  # session id -> the buyer's code, country, currency
        self.customers: dict[str, dict[str, Any]] = {}  # id -> customer
        self.deliveries: list[dict[str, Any]] = []  # webhooks sent by the pages, with paystore's answer
        self.create_calls: list[dict[str, Any]] = []
        # Every API request, with the headers paystore must send: {method, path, stripe_version, idempotency_key}.
        self.api_calls: list[dict[str, Any]] = []
        self.idempotent: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        # Every event the stand-in sent (or tried to), oldest first, and whether paystore took it
        # (answered 2xx) at least once: what `GET /v1/events` lists.
        self.events: dict[str, dict[str, Any]] = {}
        self.delivered: dict[str, bool] = {}
        # Runs when a refund is about to be made, with its payment intent and amount, outside the
        # lock (a test holds one refund "at Stripe" until a second request is seen waiting).
        self.before_refund: Callable[[str, int | None], None] | None = None
        self.refund_list_fault: int | None = None  # an HTTP status `GET /v1/refunds` answers with

    def add_session(self, session: dict[str, Any], params: dict[str, Any]) -> None:
        item = (params.get("line_items") or [{}])[0]
        price = item.get("price_data") or {}
        line = {"name": (price.get("product_data") or {}).get("name"), "unit_amount": int(price.get("unit_amount", 0)),
                "quantity": int(item.get("quantity", 1)), "currency": price.get("currency"),
                "tax_behavior": price.get("tax_behavior")}
        with self.lock:
            self.sessions[session["id"]] = copy.deepcopy(session)
            self.line_items[session["id"]] = line
            self.choices[session["id"]] = {"code": None, "country": None, "currency": None}
            self.payment_intent_params[session["id"]] = dict(params.get("payment_intent_data") or {})

    def settle(
        self, session_id: str, *, status: str = "complete", payment_status: str = "paid", intent_status: str | None = None
    ) -> dict[str, Any]:
        """Move a stored session on (a buyer paid, a delayed payment began or failed, it expired).

        A session completed with a delayed method stays complete/unpaid; its payment intent is
        `processing`, then `succeeded` or (after a failure) `requires_payment_method`.
        """
        with self.lock:
            session = self.sessions[session_id]
            session.update(status=status, payment_status=payment_status)
            if status == "complete" and payment_status != "no_payment_required" and not session.get("payment_intent"):
                session["payment_intent"] = objects.stripe_id("pi")
            if session.get("payment_intent"):
                default = "succeeded" if payment_status == "paid" else "processing"
                self.payment_intents[session["payment_intent"]] = intent_status or default
                if payment_status == "paid" and session["payment_intent"] not in self.charges:
                    self.charges[session["payment_intent"]] = self._paid_charge(session)
            if status != "open":
                session["url"] = None
            return copy.deepcopy(session)

    def reprice(self, session_id: str, charge: pricing.Charge, country: str | None, email: str | None) -> None:
        """Store what the session charges after the buyer's choices (Stripe's own arithmetic)."""
        with self.lock:
            session = self.sessions[session_id]
            session.update(amount_subtotal=charge.amount_subtotal, amount_total=charge.amount_total,
                           total_details={"amount_discount": charge.amount_discount, "amount_shipping": 0,
                                          "amount_tax": charge.amount_tax})
            promotion = charge.discount
            session["discounts"] = [{"coupon": promotion.coupon, "promotion_code": promotion.id}] if promotion else []
            session["presentment_details"] = (
                {"presentment_amount": charge.presentment_amount, "presentment_currency": charge.presentment_currency}
                if charge.presentment_currency else None)
            if session["automatic_tax"]["enabled"] and country:
                session["automatic_tax"]["status"] = "complete"
            address = dict.fromkeys(("city", "line1", "line2", "postal_code", "state")) | {"country": country}
            session["customer_details"] = {"address": address, "email": email, "name": None, "phone": None,
                                           "tax_exempt": "none", "tax_ids": [], "business_name": None,
                                           "individual_name": None}

    def add_refund(self, intent: str, amount: int | None,
                   make: Callable[[dict[str, Any], int], dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Refund `amount` of the intent's charge (None: all that is left) as Stripe does, the check
        and the refund in one step, so that two requests at once cannot refund more than the
        charge: (the refund, the charge as it now is). Raises RefundRefused as Stripe would."""
        with self.lock:
            charge = self.charges.get(intent)
            if charge is None:
                raise RefundRefused(f"{intent}: the payment has no charge to refund")
            if charge.get("disputed"):
                raise RefundRefused(f"Charge {charge['id']} has been charged back; you cannot issue a refund")
            left = charge["amount"] - charge["amount_refunded"]
            amount = left if amount is None else amount
            if not 0 < amount <= left:
                raise RefundRefused(f"{intent}: a refund must be between 1 and {left} (what is left)")
            refund = make(charge, amount)
            charge["refunds"]["data"].insert(0, copy.deepcopy(refund))
            self._total_refunds(charge)
            return refund, copy.deepcopy(charge)

    def refunds_of(self, charge_id: str) -> list[dict[str, Any]]:
        """The charge's refunds, newest first, as `GET /v1/refunds?charge=` lists them."""
        with self.lock:
            charge = next((c for c in self.charges.values() if c["id"] == charge_id), None)
            return copy.deepcopy(charge["refunds"]["data"]) if charge else []

    def set_refund_status(self, intent: str, refund_id: str, status: str, failure_reason: str | None) -> dict[str, Any]:
        """The refund moved on (settled, or failed: it stops counting in the charge's total); the
        refund as it now is."""
        with self.lock:
            charge = self.charges[intent]
            refund = next(r for r in charge["refunds"]["data"] if r["id"] == refund_id)
            refund.update(status=status, failure_reason=failure_reason,
                          failure_balance_transaction="txn_test_failure" if status == "failed" else None)
            self._total_refunds(charge)
            return copy.deepcopy(refund)

    @staticmethod
    def _total_refunds(charge: dict[str, Any]) -> None:
        charge["amount_refunded"] = sum(r["amount"] for r in charge["refunds"]["data"]
                                        if r["status"] not in ("failed", "canceled"))
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]

    @staticmethod
    def _paid_charge(session: dict[str, Any]) -> dict[str, Any]:
        """The charge of a paid session: what it totals, in its currency and mode. With Adaptive
        Pricing the buyer pays, and is refunded, in their own currency."""
        presented = session.get("presentment_details") or {}
        amount, currency = (presented["presentment_amount"], presented["presentment_currency"]) if presented else (
            session["amount_total"] or 0, session["currency"] or "usd")
        charge = objects.charge(session["payment_intent"], amount, 0, currency)
        charge.update(created=int(time.time()), captured=True, paid=True, status="succeeded", livemode=session["livemode"])
        return charge

    def snapshot(self, session_id: str) -> Snapshot:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                raise KeyError(session_id)
            intent = session.get("payment_intent")
            return Snapshot(
                session=copy.deepcopy(session),
                intent_status=self.payment_intents.get(intent) if intent else None,
                charge=copy.deepcopy(self.charges.get(intent)) if intent else None,
                dispute=copy.deepcopy(self.disputes.get(intent)) if intent else None,
            )

    def all_sessions(self) -> list[dict[str, Any]]:
        """Newest first."""
        with self.lock:
            return sorted(copy.deepcopy(list(self.sessions.values())), key=lambda s: s["created"], reverse=True)

    def payment_intent(self, intent_id: str) -> dict[str, Any] | None:
        """The payment intent as `GET /v1/payment_intents/<id>` answers it, or None."""
        with self.lock:
            if intent_id not in self.payment_intents:
                return None
            session = next((s for s in self.sessions.values() if s.get("payment_intent") == intent_id), None)
            params = self.payment_intent_params.get(session["id"], {}) if session else {}
            charge_id = (self.charges.get(intent_id) or {}).get("id")
            return objects.payment_intent(intent_id, self.payment_intents[intent_id], session, params, charge_id)

    def record_event(self, event: dict[str, Any], taken: bool) -> None:
        with self.lock:
            self.events.setdefault(event["id"], copy.deepcopy(event))
            self.delivered[event["id"]] = self.delivered.get(event["id"], False) or taken

    def listed_events(self, types: list[str], created_gte: int, undelivered_only: bool) -> list[dict[str, Any]]:
        """The events of these types since `created_gte`, newest first, as `GET /v1/events` lists them."""
        with self.lock:
            found = [copy.deepcopy(e) for e in self.events.values()
                     if (not types or e["type"] in types) and e["created"] >= created_gte
                     and not (undelivered_only and self.delivered[e["id"]])]
        return list(reversed(found))

    def record_delivery(self, session_id: str, event: dict[str, Any], answer: str) -> None:
        with self.lock:
            self.deliveries.append({"session_id": session_id, "event_id": event["id"], "type": event["type"],
                                    "answer": answer})

    def deliveries_for(self, session_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(d) for d in self.deliveries if d["session_id"] == session_id]
