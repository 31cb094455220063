"""Reading one field of a Stripe object: present, of the right type, and storable.

A field paystore reads may end up in a PostgreSQL column or a lock key, so it must fit there:
no NUL or lone surrogate (text refuses them), no wider than its column, amounts within integer.
Anything else raises `InvalidStripeObject`, which a webhook answers 400 `invalid_payload`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from paystore.inputs import UNSTORABLE
from paystore.stripe.errors import InvalidStripeObject

# Stripe ids are letters, digits and underscores; 200 keeps `webhook:session:<id>` within the
# 255 characters of stripe_events.lock_key.
STRIPE_ID = re.compile(r"[A-Za-z0-9_]{1,200}")
CURRENCY = re.compile(r"[A-Za-z]{3}")
MAX_AMOUNT = 2**31 - 1  # purchases.amount and refunded_amount are PostgreSQL integers
MAX_TEXT = 255


def field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
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


def stripe_id(obj: dict[str, Any], name: str) -> str:
    value = field(obj, name, str)
    if not STRIPE_ID.fullmatch(value):
        raise InvalidStripeObject(f"{obj.get('object', 'object')}.{name} is not a Stripe id")
    return value


def currency(obj: dict[str, Any], *, name: str = "currency", optional: bool = False) -> str | None:
    value = field(obj, name, str, optional=optional)
    if value is not None and not CURRENCY.fullmatch(value):
        raise InvalidStripeObject(f"{obj.get('object', 'object')}.{name} is not a currency code")
    return value.lower() if value is not None else None


def nested(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """An object inside `obj` (empty when absent or null), labelled so that errors name its path."""
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidStripeObject(f"{obj.get('object', 'object')}.{name} must be an object")
    return {**value, "object": f"{obj.get('object', 'object')}.{name}"}


def livemode(obj: dict[str, Any]) -> bool:
    value = obj.get("livemode", False)
    if not isinstance(value, bool):
        raise InvalidStripeObject(f"{obj.get('object', 'object')}.livemode must be true or false")
    return value


def expandable_id(obj: dict[str, Any], name: str) -> str | None:
    """Stripe fields such as `payment_intent` hold an id, or the object when expanded."""
    value = obj.get(name)
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        return None
    if not STRIPE_ID.fullmatch(value):
        raise InvalidStripeObject(f"{obj.get('object', 'object')}.{name} is not a Stripe id")
    return value


def timestamp(value: Any) -> datetime | None:
    """A Unix time; None when absent or unusable (paystore only keeps it as a hint)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


# Metadata paystore reads: the purchase it names, and what recovery rebuilds it from.
_READ_METADATA = ("purchase_id", "user_id", "program_id")


def metadata(obj: dict[str, Any]) -> dict[str, str]:
    found = obj.get("metadata") or {}
    if not isinstance(found, dict):
        raise InvalidStripeObject("checkout.session.metadata must be an object")
    for key in _READ_METADATA:
        value = found.get(key)
        if value is not None and (not isinstance(value, str) or UNSTORABLE.search(value) or len(value) > 128):
            raise InvalidStripeObject(f"checkout.session.metadata.{key} must be a storable string of at most 128")
    return {str(k): v if isinstance(v, str) else str(v) for k, v in found.items()}
