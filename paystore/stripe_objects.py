"""The few Stripe objects paystore reads, parsed from plain dicts (API answers or event payloads).

Parsing is strict about what paystore relies on and ignores everything else, so Stripe may add
fields freely. A missing or mistyped field raises `InvalidStripeObject` (HTTP 400 for a webhook).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class InvalidStripeObject(ValueError):
    """A Stripe object lacks a field paystore needs; the message names the field."""


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    value = obj.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise InvalidStripeObject(f"{obj.get('object', 'object')}.{name} is missing or has the wrong type")
    return value


def _expandable_id(obj: dict[str, Any], name: str) -> str | None:
    """Stripe fields such as `payment_intent` hold an id, or the object when expanded."""
    value = obj.get(name)
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None


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
        session_id = _field(obj, "id", str)
        if not session_id.startswith("cs_"):
            raise InvalidStripeObject("checkout.session.id must start with cs_")
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InvalidStripeObject("checkout.session.metadata must be an object")
        currency = _field(obj, "currency", str, optional=True)
        return cls(
            id=session_id,
            url=_field(obj, "url", str, optional=True),
            status=_field(obj, "status", str, optional=True),
            payment_status=_field(obj, "payment_status", str),
            amount_total=_field(obj, "amount_total", int, optional=True),
            currency=currency.lower() if currency else None,
            livemode=bool(obj.get("livemode", False)),
            payment_intent_id=_expandable_id(obj, "payment_intent"),
            expires_at=_timestamp(obj.get("expires_at")),
            metadata={str(k): str(v) for k, v in metadata.items()},
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
            id=_field(obj, "id", str),
            payment_intent_id=_expandable_id(obj, "payment_intent"),
            amount=_field(obj, "amount", int),
            amount_refunded=_field(obj, "amount_refunded", int),
            currency=_field(obj, "currency", str).lower(),
            livemode=bool(obj.get("livemode", False)),
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
            id=_field(obj, "id", str),
            payment_intent_id=_expandable_id(obj, "payment_intent"),
            status=_field(obj, "status", str),
            livemode=bool(obj.get("livemode", False)),
        )


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    livemode: bool
    object: dict[str, Any]
    payload: dict[str, Any]

    @classmethod
    def from_dict(cls, payload: Any) -> Event:
        if not isinstance(payload, dict) or payload.get("object") != "event":
            raise InvalidStripeObject("the body is not a Stripe event object")
        event_id = _field(payload, "id", str)
        if not event_id.startswith("evt_") or len(event_id) > 255:
            raise InvalidStripeObject("event.id must be an evt_ id")
        data = payload.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
            raise InvalidStripeObject("event.data.object is missing")
        return cls(
            id=event_id,
            type=_field(payload, "type", str),
            livemode=bool(payload.get("livemode", False)),
            object=data["object"],
            payload=payload,
        )
