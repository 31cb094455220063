"""The few Stripe objects paystore reads, parsed from plain dicts (API answers or event payloads);
those of money going back (refunds, charges, disputes, warnings) are in money_objects.

Parsing is strict about what paystore relies on and ignores everything else, so Stripe may add
fields freely. A missing or mistyped field raises `InvalidStripeObject` (HTTP 400 for a webhook),
and so does a field paystore reads (and may store) that PostgreSQL could not store: a string
with NUL or a lone surrogate, an id or amount wider than its column. Fields paystore does not
read are never refused: the event's stored payload has their unstorable characters replaced
(paystore.inputs.storable_document), so that the event can still be recorded and handled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from paystore.inputs import storable_document
from paystore.stripe import fields as read
from paystore.stripe.errors import InvalidStripeObject
from paystore.stripe.money_objects import Charge, Dispute, EarlyFraudWarning, RefundPage, RefundReport

__all__ = ["Charge", "CheckoutSession", "Dispute", "EarlyFraudWarning", "Event", "EventPage", "RefundPage",
           "RefundReport"]


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str | None
    status: str | None
    payment_status: str
    # What was bought, and what was charged (in the integration's currency since 2025-03-31.basil):
    # subtotal = the line items before discounts and tax, total = subtotal - discount + exclusive tax.
    amount_subtotal: int | None
    amount_total: int | None
    amount_discount: int
    amount_tax: int
    discount: str | None  # the promotion code's id, else the coupon's, of the session's discount
    currency: str | None
    # What the buyer saw and paid with Adaptive Pricing, in their own currency (None without it).
    presentment_amount: int | None
    presentment_currency: str | None
    livemode: bool
    payment_intent_id: str | None
    expires_at: datetime | None
    metadata: dict[str, str]
    customer_id: str | None
    customer_email: str | None

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> CheckoutSession:
        session_id = read.stripe_id(obj, "id")
        if not session_id.startswith("cs_"):
            raise InvalidStripeObject("checkout.session.id must start with cs_")
        totals = read.nested(obj, "total_details")
        presentment = read.nested(obj, "presentment_details")
        discounts = read.field(obj, "discounts", list, optional=True) or []
        first = read.nested({"object": "checkout.session", "discount": discounts[0]}, "discount") if discounts else {}
        return cls(
            id=session_id,
            url=read.field(obj, "url", str, optional=True),
            status=read.field(obj, "status", str, optional=True),
            payment_status=read.field(obj, "payment_status", str),
            amount_subtotal=read.field(obj, "amount_subtotal", int, optional=True),
            amount_total=read.field(obj, "amount_total", int, optional=True),
            amount_discount=read.field(totals, "amount_discount", int, optional=True) or 0,
            amount_tax=read.field(totals, "amount_tax", int, optional=True) or 0,
            discount=read.expandable_id(first, "promotion_code") or read.expandable_id(first, "coupon"),
            currency=read.currency(obj, optional=True),
            presentment_amount=read.field(presentment, "presentment_amount", int, optional=True),
            presentment_currency=read.currency(presentment, name="presentment_currency", optional=True),
            livemode=read.livemode(obj),
            payment_intent_id=read.expandable_id(obj, "payment_intent"),
            expires_at=read.timestamp(obj.get("expires_at")),
            metadata=read.metadata(obj),
            customer_id=read.expandable_id(obj, "customer"),
            customer_email=read.field(read.nested(obj, "customer_details"), "email", str, optional=True),
        )


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    livemode: bool
    object: dict[str, Any]
    payload: dict[str, Any]  # as stored: unstorable characters of unread fields replaced
    altered_strings: int = 0
    payload_json: str | None = field(default=None, compare=False, repr=False)  # `payload` as JSON text
    api_version: str | None = None  # the version the event's object is rendered in (the endpoint's)

    @classmethod
    def from_dict(cls, payload: Any, received: str | None = None) -> Event:
        """`received`: the JSON text `payload` was parsed from (by `loads_bounded`), if any."""
        if not isinstance(payload, dict) or payload.get("object") != "event":
            raise InvalidStripeObject("the body is not a Stripe event object")
        event_id = read.field(payload, "id", str)
        if not event_id.startswith("evt_") or not read.STRIPE_ID.fullmatch(event_id):
            raise InvalidStripeObject("event.id must be an evt_ id")
        data = payload.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
            raise InvalidStripeObject("event.data.object is missing")
        event_type = read.field(payload, "type", str)
        if len(event_type) > 128:
            raise InvalidStripeObject("event.type is longer than 128")
        stored, altered, stored_json = storable_document(payload, received)
        api_version = read.field(payload, "api_version", str, optional=True)
        return cls(
            id=event_id,
            type=event_type,
            livemode=read.livemode(payload),
            object=data["object"],
            payload=stored,
            altered_strings=altered,
            payload_json=stored_json,
            api_version=api_version,
        )


@dataclass(frozen=True)
class EventPage:
    """One page of `GET /v1/events`: the events as Stripe stores them, newest first."""

    events: tuple[dict[str, Any], ...]
    has_more: bool

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> EventPage:
        data = read.field(obj, "data", list)
        if not all(isinstance(item, dict) for item in data):
            raise InvalidStripeObject("list.data must hold event objects")
        return cls(tuple(data), obj.get("has_more") is True)
