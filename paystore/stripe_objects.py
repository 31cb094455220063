"""The few Stripe objects paystore reads, parsed from plain dicts (API answers or event payloads).

Parsing is strict about what paystore relies on and ignores everything else, so Stripe may add
fields freely. A missing or mistyped field raises `InvalidStripeObject` (HTTP 400 for a webhook),
and so does a field paystore reads (and may store) that PostgreSQL could not store: a string
with NUL or a lone surrogate, an id or amount wider than its column. Fields paystore does not
read are never refused: the event's stored payload has their unstorable characters replaced
(paystore.inputs.storable_json), so that the event can still be recorded and handled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from paystore.inputs import UNSTORABLE, storable_json

# Stripe ids are letters, digits and underscores; 200 keeps `webhook:session:<id>` within the
# 255 characters of stripe_events.lock_key.
STRIPE_ID = re.compile(r"[A-Za-z0-9_]{1,200}")
CURRENCY = re.compile(r"[A-Za-z]{3}")
MAX_AMOUNT = 2**31 - 1  # purchases.amount and refunded_amount are PostgreSQL integers
MAX_TEXT = 255


class InvalidStripeObject(ValueError):
    """A Stripe object lacks a field paystore needs; the message names the field."""


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    value = obj.get(name)
    if value is None and optional:
        return None
    where = f"{obj.get('object', 'object')}.{name}"
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise InvalidStripeObject(f"{where} is missing or has the wrong type")
    if isinstance(value, str) and (UNSTORABLE.search(value) or len(value) > MAX_TEXT):
        raise InvalidStripeObject(f"{where} is longer than {MAX_TEXT} or holds a NUL or lone surrogate")
    if isinstance(value, int) and not 0 <= value <= MAX_AMOUNT:
        raise InvalidStripeObject(f"{where} is out of range")
    return value


def _stripe_id(obj: dict[str, Any], name: str) -> str:
    value = _field(obj, name, str)
    if not STRIPE_ID.fullmatch(value):
        raise InvalidStripeObject(f"{obj.get('object', 'object')}.{name} is not a Stripe id")
    return value


def _currency(obj: dict[str, Any], *, optional: bool = False) -> str | None:
    value = _field(obj, "currency", str, optional=optional)
    if value is not None and not CURRENCY.fullmatch(value):
        raise InvalidStripeObject(f"{obj.get('object', 'object')}.currency is not a currency code")
    return value.lower() if value is not None else None


def _livemode(obj: dict[str, Any]) -> bool:
    value = obj.get("livemode", False)
    if not isinstance(value, bool):
        raise InvalidStripeObject(f"{obj.get('object', 'object')}.livemode must be true or false")
    return value


def _expandable_id(obj: dict[str, Any], name: str) -> str | None:
    """Stripe fields such as `payment_intent` hold an id, or the object when expanded."""
    value = obj.get(name)
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        return None
    if not STRIPE_ID.fullmatch(value):
        raise InvalidStripeObject(f"{obj.get('object', 'object')}.{name} is not a Stripe id")
    return value


def _timestamp(value: Any) -> datetime | None:
    """A Unix time; None when absent or unusable (paystore only keeps it as a hint)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


# Metadata paystore reads: the purchase it names, and what recovery rebuilds it from.
_READ_METADATA = ("purchase_id", "user_id", "program_id")


def _metadata(obj: dict[str, Any]) -> dict[str, str]:
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidStripeObject("checkout.session.metadata must be an object")
    for key in _READ_METADATA:
        value = metadata.get(key)
        if value is not None and (not isinstance(value, str) or UNSTORABLE.search(value) or len(value) > 128):
            raise InvalidStripeObject(f"checkout.session.metadata.{key} must be a storable string of at most 128")
    return {str(k): v if isinstance(v, str) else str(v) for k, v in metadata.items()}


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str | None
    status: str | None
    payment_status: str
    amount_total: int | None
    currency: str | None
    livemode: bool
    payment_intent_id: str | None
    expires_at: datetime | None
    metadata: dict[str, str]

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> CheckoutSession:
        session_id = _stripe_id(obj, "id")
        if not session_id.startswith("cs_"):
            raise InvalidStripeObject("checkout.session.id must start with cs_")
        return cls(
            id=session_id,
            url=_field(obj, "url", str, optional=True),
            status=_field(obj, "status", str, optional=True),
            payment_status=_field(obj, "payment_status", str),
            amount_total=_field(obj, "amount_total", int, optional=True),
            currency=_currency(obj, optional=True),
            livemode=_livemode(obj),
            payment_intent_id=_expandable_id(obj, "payment_intent"),
            expires_at=_timestamp(obj.get("expires_at")),
            metadata=_metadata(obj),
        )


@dataclass(frozen=True)
class Charge:
    id: str
    payment_intent_id: str | None
    amount: int
    amount_refunded: int
    currency: str
    livemode: bool

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Charge:
        return cls(
            id=_stripe_id(obj, "id"),
            payment_intent_id=_expandable_id(obj, "payment_intent"),
            amount=_field(obj, "amount", int),
            amount_refunded=_field(obj, "amount_refunded", int),
            currency=_currency(obj) or "",
            livemode=_livemode(obj),
        )


@dataclass(frozen=True)
class Dispute:
    id: str
    payment_intent_id: str | None
    status: str
    livemode: bool

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Dispute:
        return cls(
            id=_stripe_id(obj, "id"),
            payment_intent_id=_expandable_id(obj, "payment_intent"),
            status=_field(obj, "status", str),
            livemode=_livemode(obj),
        )


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    livemode: bool
    object: dict[str, Any]
    payload: dict[str, Any]  # as stored: unstorable characters of unread fields replaced
    altered_strings: int = 0

    @classmethod
    def from_dict(cls, payload: Any) -> Event:
        if not isinstance(payload, dict) or payload.get("object") != "event":
            raise InvalidStripeObject("the body is not a Stripe event object")
        event_id = _field(payload, "id", str)
        if not event_id.startswith("evt_") or not STRIPE_ID.fullmatch(event_id):
            raise InvalidStripeObject("event.id must be an evt_ id")
        data = payload.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
            raise InvalidStripeObject("event.data.object is missing")
        event_type = _field(payload, "type", str)
        if len(event_type) > 128:
            raise InvalidStripeObject("event.type is longer than 128")
        stored, altered = storable_json(payload)
        return cls(
            id=event_id,
            type=event_type,
            livemode=_livemode(payload),
            object=data["object"],
            payload=stored,
            altered_strings=altered,
        )
