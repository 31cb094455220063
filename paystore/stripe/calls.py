"""Every call paystore makes to Stripe, built as plain parameters (pure functions).

The gateway sends nothing else: each of its calls is one `Call` made here, so a test can
build every variant and check it against stripe-python's typed parameters for the pinned API
version (tests/unit/test_stripe_calls.py), where a misspelt nested key or an unknown enum
value fails before any Stripe account sees it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Call:
    operation: str  # e.g. "checkout.sessions.create": the name metrics and logs use
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None


@dataclass(frozen=True)
class CheckoutRequest:
    """What a checkout asks Stripe for, every option decided (program, then deployment settings)."""

    purchase_id: uuid.UUID
    user_id: str
    program_id: str
    program_name: str
    amount: int
    currency: str
    success_url: str
    cancel_url: str
    email: str | None = None
    customer_id: str | None = None
    allow_promotion_codes: bool = False
    automatic_tax: bool = False
    tax_behavior: str | None = None  # with automatic tax: "exclusive" or "inclusive"
    tax_code: str | None = None
    receipt_email: bool = False
    invoice_creation: bool = False
    tax_id_collection: bool = False


def create_checkout_session(request: CheckoutRequest) -> Call:
    metadata = {"purchase_id": str(request.purchase_id), "user_id": request.user_id, "program_id": request.program_id}
    product: dict[str, Any] = {"name": request.program_name}
    if request.tax_code:
        product["tax_code"] = request.tax_code
    price: dict[str, Any] = {"currency": request.currency, "unit_amount": request.amount, "product_data": product}
    intent: dict[str, Any] = {"metadata": metadata}
    if request.receipt_email and request.email:
        intent["receipt_email"] = request.email
    params: dict[str, Any] = {
        "mode": "payment",
        "client_reference_id": str(request.purchase_id),
        "metadata": metadata,
        "payment_intent_data": intent,
        "line_items": [{"quantity": 1, "price_data": price}],
        "success_url": request.success_url,
        "cancel_url": request.cancel_url,
    }
    if request.automatic_tax:
        params["automatic_tax"] = {"enabled": True}
        price["tax_behavior"] = request.tax_behavior or "exclusive"
    if request.allow_promotion_codes:
        params["allow_promotion_codes"] = True
    if request.customer_id:
        params["customer"] = request.customer_id
        # Stripe Tax reads the address, and a tax id needs the name, from what the buyer types
        # at checkout: an existing customer must let checkout save them.
        update = {**({"address": "auto"} if request.automatic_tax else {}),
                  **({"name": "auto"} if request.tax_id_collection else {})}
        if update:
            params["customer_update"] = update
    elif request.email:
        params["customer_email"] = request.email
    if request.invoice_creation:
        params["invoice_creation"] = {"enabled": True, "invoice_data": {"metadata": metadata}}
    if request.tax_id_collection:
        params["tax_id_collection"] = {"enabled": True}
    return Call("checkout.sessions.create", "post", "/v1/checkout/sessions", params,
                   idempotency_key=f"checkout:{request.purchase_id}")


def retrieve_checkout_session(session_id: str) -> Call:
    return Call("checkout.sessions.retrieve", "get", f"/v1/checkout/sessions/{session_id}")


def retrieve_payment_intent(payment_intent_id: str) -> Call:
    return Call("payment_intents.retrieve", "get", f"/v1/payment_intents/{payment_intent_id}")


def create_customer(user_id: str, email: str | None, livemode: bool) -> Call:
    """The user's Stripe Customer. The idempotency key is the user and the email: a retry after a
    lost answer gets the same customer; another email is another request (Stripe refuses a
    key reused with other parameters)."""
    params: dict[str, Any] = {"metadata": {"user_id": user_id}}
    if email:
        params["email"] = email
    fingerprint = hashlib.sha256(f"{livemode}:{email or ''}".encode()).hexdigest()[:16]
    return Call("customers.create", "post", "/v1/customers", params, idempotency_key=f"customer:{user_id}:{fingerprint}")


def create_refund(payment_intent_id: str, amount: int | None, reason: str | None, metadata: dict[str, str],
                  idempotency_key: str) -> Call:
    """A refund of the payment (`amount` None: all that is left of it)."""
    params: dict[str, Any] = {"payment_intent": payment_intent_id, "metadata": metadata}
    if amount is not None:
        params["amount"] = amount
    if reason is not None:
        params["reason"] = reason
    return Call("refunds.create", "post", "/v1/refunds", params, idempotency_key=idempotency_key)


# What `paystore events sync` reads: the events of these types since a time, newest first, a page at a time.
def list_events(types: tuple[str, ...], created_gte: int, *, undelivered_only: bool, starting_after: str | None) -> Call:
    params: dict[str, Any] = {"types": list(types), "created": {"gte": created_gte}, "limit": 100}
    if undelivered_only:
        params["delivery_success"] = False
    if starting_after is not None:
        params["starting_after"] = starting_after
    return Call("events.list", "get", "/v1/events", params)


# Every refund of a charge, a page at a time (newest first): a `charge.refunded` at the pinned
# version carries no list of them, and before 2022-11-15 only the first ten.
def list_refunds(charge_id: str, *, starting_after: str | None = None) -> Call:
    params: dict[str, Any] = {"charge": charge_id, "limit": 100}
    if starting_after is not None:
        params["starting_after"] = starting_after
    return Call("refunds.list", "get", "/v1/refunds", params)
