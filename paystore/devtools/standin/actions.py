"""What a buyer, a bank and Stripe's Dashboard can do to a checkout session of the stand-in.

Each action moves the stored objects on (so that `GET checkout/sessions/<id>` and
`GET payment_intents/<id>` agree with the events, as paystore's return page and reconcile rely on)
and returns the events real Stripe would send for it, in Stripe's shapes; the stand-in delivers
them signed. Only the event types paystore subscribes to are produced.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from paystore.devtools.standin import objects, pricing
from paystore.devtools.standin.state import RefundRefused, StandInState


class ActionRefused(Exception):
    """The action does not apply to the session in its current state (the message says why)."""


class PaymentActions:
    """The buttons of the stand-in's pages, given the state they act on."""

    def __init__(self, state: StandInState) -> None:
        self.state = state

    def _require(self, session_id: str, ok: bool, why: str) -> None:
        if not ok:
            raise ActionRefused(f"{session_id}: {why}")

    def _open(self, session_id: str) -> None:
        status = self.state.snapshot(session_id).session["status"]
        self._require(session_id, status == "open", f"the session is {status}, not open")

    # ------------------------------------------------------------------ buyer, on the checkout page
    def choose(self, session_id: str, *, code: str | None = None, country: str | None = None,
               currency: str | None = None) -> None:
        """The buyer enters a promotion code, their country (Stripe Tax) or their currency (Adaptive
        Pricing); the session's amounts follow, as Stripe recomputes them before payment."""
        self._open(session_id)
        session = self.state.snapshot(session_id).session
        self._require(session_id, not code or bool(session.get("allow_promotion_codes")),
                      "this checkout does not take promotion codes")
        self._require(session_id, not currency or currency in pricing.PRESENTMENT_RATES or currency == session["currency"],
                      f"no test rate for {currency}")
        with self.state.lock:
            self.state.choices[session_id].update(code=code or None, country=country or None, currency=currency or None)
        self._reprice(session_id)

    def _reprice(self, session_id: str) -> None:
        session, line = self.state.snapshot(session_id).session, self.state.line_items[session_id]
        chosen = self.state.choices[session_id]
        try:
            charge = pricing.charge(line["unit_amount"], line["quantity"], line["currency"], code=chosen["code"],
                                    country=chosen["country"], automatic_tax=session["automatic_tax"]["enabled"],
                                    tax_behavior=line["tax_behavior"], presentment_currency=chosen["currency"])
        except pricing.UnknownCode as exc:
            raise ActionRefused(f"{session_id}: {exc}") from None
        customer = self.state.customers.get(session.get("customer") or "", {})
        email = customer.get("email") or session.get("customer_email") or "buyer@example.com"
        self.state.reprice(session_id, charge, chosen["country"] or "US", email)

    def pay_by_card(self, session_id: str) -> list[dict[str, Any]]:
        self._open(session_id)
        self._reprice(session_id)
        due = self._amount_due(session_id)  # nothing, with a 100 % promotion code: no payment intent, no charge
        session = self.state.settle(session_id, payment_status="paid" if due else "no_payment_required")
        return [objects.event("checkout.session.completed", session)]

    def pay_by_bank_debit(self, session_id: str) -> list[dict[str, Any]]:
        """Checkout completes, the money is not in yet: complete/unpaid, payment intent processing."""
        self._open(session_id)
        self._reprice(session_id)
        session = self.state.settle(session_id, payment_status="unpaid", intent_status="processing")
        return [objects.event("checkout.session.completed", session)]

    def _amount_due(self, session_id: str) -> int:
        return self.state.snapshot(session_id).session["amount_total"] or 0

    def expire(self, session_id: str) -> list[dict[str, Any]]:
        self._open(session_id)
        session = self.state.settle(session_id, status="expired", payment_status="unpaid")
        return [objects.event("checkout.session.expired", session)]

    # ------------------------------------------------------------------ the bank, for a bank debit
    def settle_bank_debit(self, session_id: str, *, succeeded: bool) -> list[dict[str, Any]]:
        self._require(session_id, self.state.snapshot(session_id).intent_status == "processing", "no bank debit is processing")
        if not succeeded:
            session = self.state.settle(session_id, payment_status="unpaid", intent_status="requires_payment_method")
            return [objects.event("checkout.session.async_payment_failed", session)]
        session = self.state.settle(session_id, payment_status="paid", intent_status="succeeded")
        return [objects.event("checkout.session.async_payment_succeeded", session)]

    # ------------------------------------------------------------------ the Dashboard, after payment
    def _paid_charge(self, session_id: str) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
        snapshot = self.state.snapshot(session_id)
        self._require(session_id, snapshot.charge is not None, "the session is not paid")
        return snapshot.session["payment_intent"], snapshot.charge, snapshot.dispute  # type: ignore[return-value]

    def refund(self, session_id: str, amount: int | None = None, *, status: str = "succeeded") -> list[dict[str, Any]]:
        """The Dashboard's Refund: `amount` (default: all that is left). `status` "pending": the
        bank has not confirmed it yet (it settles later: `settle_refund`)."""
        intent, _, _ = self._paid_charge(session_id)
        return self.refund_payment(intent, amount, status=status)[1]

    def refund_payment(self, intent: str, amount: int | None = None, reason: str | None = None,
                       metadata: dict[str, str] | None = None, *, status: str = "succeeded",
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A refund of the payment and Stripe's events for it: `refund.created` (every refund since
        2024-10-28.acacia) and `charge.refunded`, rendered as at the pinned version: the charge
        without its refunds (not included unless expanded since 2022-11-15), which paystore lists
        at `GET /v1/refunds?charge=`."""
        if self.state.before_refund is not None:
            self.state.before_refund(intent, amount)
        try:
            refund, charge = self.state.add_refund(
                intent, amount, lambda charge, amount: objects.refund(charge, amount, status, reason=reason, metadata=metadata))
        except RefundRefused as exc:
            raise ActionRefused(str(exc)) from None
        charge.pop("refunds", None)
        return refund, [objects.event("refund.created", refund), objects.event("charge.refunded", charge)]

    def fail_refund(self, session_id: str, refund_id: str | None = None) -> list[dict[str, Any]]:
        """The card was expired or cancelled: a succeeded (or still pending) refund fails days later
        and the money goes back to the shop's balance (test card 4000 0000 0000 5126 does this)."""
        refund = self._refund_in(session_id, refund_id, ("succeeded", "pending"))
        refund = self.state.set_refund_status(refund["intent"], refund["id"], "failed", "expired_or_canceled_card")
        return [objects.event(kind, refund) for kind in ("refund.failed", "refund.updated", "charge.refund.updated")]

    def settle_refund(self, session_id: str, refund_id: str | None = None) -> list[dict[str, Any]]:
        """A pending refund reaches the buyer's bank: it succeeds."""
        refund = self._refund_in(session_id, refund_id, ("pending",))
        refund = self.state.set_refund_status(refund["intent"], refund["id"], "succeeded", None)
        return [objects.event(kind, refund) for kind in ("refund.updated", "charge.refund.updated")]

    def _refund_in(self, session_id: str, refund_id: str | None, statuses: tuple[str, ...]) -> dict[str, Any]:
        """The latest refund of the session's charge in one of `statuses` (or the one named), with its intent."""
        intent, charge, _ = self._paid_charge(session_id)
        found = [r for r in charge["refunds"]["data"] if r["status"] in statuses and refund_id in (None, r["id"])]
        self._require(session_id, bool(found), f"no {' or '.join(statuses)} refund")
        return {**found[-1], "intent": intent}

    def open_dispute(self, session_id: str) -> list[dict[str, Any]]:
        intent, charge, dispute = self._paid_charge(session_id)
        self._require(session_id, dispute is None, "the charge is already disputed (a charge has one dispute)")
        dispute = objects.dispute(intent, "needs_response", amount=charge["amount"])
        dispute.update(charge=charge["id"], currency=charge["currency"], created=int(time.time()), livemode=charge["livemode"])
        with self.state.lock:
            self.state.disputes[intent] = dispute
            self.state.charges[intent]["disputed"] = True
        return [objects.event("charge.dispute.created", dispute)]

    def close_dispute(self, session_id: str, *, won: bool) -> list[dict[str, Any]]:
        intent, _, dispute = self._paid_charge(session_id)
        self._require(session_id, dispute is not None and dispute["status"] == "needs_response", "no dispute is open")
        with self.state.lock:
            self.state.disputes[intent]["status"] = "won" if won else "lost"
            dispute = copy.deepcopy(self.state.disputes[intent])
        return [objects.event("charge.dispute.closed", dispute)]
