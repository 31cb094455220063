"""Stripe's objects in their published shapes, as the stand-in hands them out and puts them in
events, and Stripe's webhook signature.

Each builder copies Stripe's own example object (fixtures/stripe_objects.json, from Stripe's
OpenAPI fixtures) and fills in what a real call or event would carry. Pure functions: the stand-in's
state decides what is stored.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

_FIXTURE_FILE: dict[str, Any] = json.loads((Path(__file__).parent / "fixtures" / "stripe_objects.json").read_text())
# The API version the example objects were brought to (fixtures/README.md): the stand-in's objects
# and events are in that shape, and it refuses requests in any other version. A test holds it equal
# to paystore's pin, so bumping the pin without bringing the fixtures along fails.
API_VERSION: str = _FIXTURE_FILE.pop("api_version")
FIXTURES: dict[str, dict[str, Any]] = _FIXTURE_FILE


def stripe_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's v1 scheme: HMAC-SHA256 of "<t>.<body>" keyed with the endpoint secret."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """The event envelope Stripe sends for `obj`, in the object's mode."""
    envelope = copy.deepcopy(FIXTURES["event"])
    envelope.update(
        id=event_id or f"evt_{secrets.token_hex(12)}",
        type=event_type,
        created=int(time.time()),
        livemode=bool(obj.get("livemode", False)),
        api_version=API_VERSION,
        data={"object": copy.deepcopy(obj)},
        pending_webhooks=1,
    )
    return envelope


def checkout_session(params: dict[str, Any], base_url: str, livemode: bool = False) -> dict[str, Any]:
    """The open session `POST /v1/checkout/sessions` creates from these (decoded) parameters."""
    item = (params.get("line_items") or [{}])[0]
    price = item.get("price_data") or {}
    amount = int(price.get("unit_amount", 0)) * int(item.get("quantity", 1))
    now = int(time.time())
    automatic_tax = _true((params.get("automatic_tax") or {}).get("enabled"))
    session = copy.deepcopy(FIXTURES["checkout.session"])
    session.update(
        id=stripe_id("cs"),
        created=now,
        expires_at=now + 24 * 3600,
        status="open",
        payment_status="unpaid",
        payment_intent=None,
        livemode=livemode,
        mode=params.get("mode", "payment"),
        amount_subtotal=amount,
        amount_total=amount,
        currency=price.get("currency"),
        client_reference_id=params.get("client_reference_id"),
        metadata=dict(params.get("metadata") or {}),
        success_url=params.get("success_url"),
        cancel_url=params.get("cancel_url"),
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        discounts=[],
        presentment_details=None,
        automatic_tax=_automatic_tax(automatic_tax, "requires_location_inputs"),
        allow_promotion_codes=_true(params.get("allow_promotion_codes")) or None,
        customer=params.get("customer"),
        customer_email=params.get("customer_email"),
        customer_details=None,
        invoice_creation={"enabled": _true((params.get("invoice_creation") or {}).get("enabled")), "invoice_data": {}},
        tax_id_collection={"enabled": _true((params.get("tax_id_collection") or {}).get("enabled")), "required": "never"},
    )
    session["url"] = f"{base_url}/pay/{session['id']}"
    return session


def _automatic_tax(enabled: bool, status: str) -> dict[str, Any]:
    if not enabled:
        return {"enabled": False, "liability": None, "provider": None, "status": None}
    return {"enabled": True, "liability": {"type": "self"}, "provider": "stripe", "status": status}


def _true(value: Any) -> bool:
    """A form-encoded boolean (stripe-python sends "true")."""
    return value in (True, "true")


def customer(params: dict[str, Any], livemode: bool = False) -> dict[str, Any]:
    """The customer `POST /v1/customers` creates."""
    return {"id": stripe_id("cus"), "object": "customer", "created": int(time.time()), "livemode": livemode,
            "email": params.get("email"), "metadata": dict(params.get("metadata") or {}), "name": None}


def charge(payment_intent: str, amount: int, amount_refunded: int = 0, currency: str = "usd") -> dict[str, Any]:
    found = copy.deepcopy(FIXTURES["charge"])
    found.update(id=stripe_id("ch"), payment_intent=payment_intent, amount=amount, amount_captured=amount,
                 amount_refunded=amount_refunded, refunded=amount_refunded >= amount, currency=currency)
    found["refunds"] = {"object": "list", "data": [], "has_more": False, "url": f"/v1/charges/{found['id']}/refunds"}
    return found


def refund(charge: dict[str, Any], amount: int, status: str = "succeeded", reason: str | None = None,
           metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """A refund of `charge`, as `POST /v1/refunds` answers and refund.* events carry it."""
    found = copy.deepcopy(FIXTURES["refund"])
    found.update(id=stripe_id("re"), amount=amount, charge=charge["id"], payment_intent=charge.get("payment_intent"),
                 currency=charge.get("currency"), created=int(time.time()), status=status, reason=reason,
                 metadata=dict(metadata or {}), failure_reason=None, failure_balance_transaction=None)
    return found


def dispute(payment_intent: str, status: str, dispute_id: str | None = None, amount: int = 0) -> dict[str, Any]:
    found = copy.deepcopy(FIXTURES["dispute"])
    found.update(id=dispute_id or stripe_id("dp"), payment_intent=payment_intent, status=status,
                 charge=stripe_id("ch"), amount=amount)
    return found


def payment_intent(intent_id: str, status: str, session: dict[str, Any] | None, params: dict[str, Any],
                   charge_id: str | None) -> dict[str, Any]:
    """The payment intent of `session` (None: unknown to the stand-in) as `GET /v1/payment_intents/<id>`
    answers it; `params` are the session's `payment_intent_data`."""
    intent = copy.deepcopy(FIXTURES["payment_intent"])
    intent.update(id=intent_id, status=status, last_payment_error=None, next_action=None, canceled_at=None,
                  latest_charge=charge_id)
    if session is not None:
        intent.update(amount=session["amount_total"], currency=session["currency"], livemode=session["livemode"],
                      created=session["created"], metadata=dict(params.get("metadata") or {}),
                      amount_received=session["amount_total"] if status == "succeeded" else 0)
    return intent


def error(kind: str, message: str) -> dict[str, Any]:
    """Stripe's error body."""
    return {"error": {"type": kind, "message": message}}
