"""The Stripe objects of money going back to the buyer: refunds (one, or a page of a charge's),
the charge, disputes and Radar's early fraud warnings, parsed as strictly as paystore.stripe.objects
parses the rest (the same rules: what paystore reads must be there and storable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paystore.stripe import fields as read
from paystore.stripe.errors import InvalidStripeObject

# The metadata keys under which a refund the shop asked for carries its request.
SHOP_REQUEST_KEY = "paystore_idempotency_key"
SHOP_REQUEST_FINGERPRINT = "paystore_request_fingerprint"


@dataclass(frozen=True)
class RefundReport:
    """One refund as Stripe reports it (a refund object, or an entry of a charge's refund list)."""

    id: str
    charge_id: str | None
    payment_intent_id: str | None
    amount: int
    status: str
    failure_reason: str | None
    reason: str | None
    currency: str | None = None  # the charge's
    # With Adaptive Pricing, what the buyer gets back in their own currency, when Stripe keeps the
    # refund itself in the integration's currency (`presentment_details`).
    presentment_amount: int | None = None
    presentment_currency: str | None = None
    # The shop's request this refund answers (its Idempotency-Key and the fingerprint of its body),
    # as paystore put it in the refund's metadata; None for a refund made elsewhere.
    shop_request: tuple[str, str] | None = None

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> RefundReport:
        refund_id = read.stripe_id(obj, "id")
        if not refund_id.startswith(("re_", "pyr_")):
            raise InvalidStripeObject("refund.id must start with re_")
        presented = read.nested(obj, "presentment_details")
        tagged = read.nested(obj, "metadata")
        request_key = read.field(tagged, SHOP_REQUEST_KEY, str, optional=True)
        request_fingerprint = read.field(tagged, SHOP_REQUEST_FINGERPRINT, str, optional=True)
        return cls(
            id=refund_id,
            charge_id=read.expandable_id(obj, "charge"),
            payment_intent_id=read.expandable_id(obj, "payment_intent"),
            amount=read.field(obj, "amount", int),
            status=read.field(obj, "status", str),
            failure_reason=read.field(obj, "failure_reason", str, optional=True),
            reason=read.field(obj, "reason", str, optional=True),
            currency=read.currency(obj, optional=True),
            presentment_amount=read.field(presented, "presentment_amount", int, optional=True),
            presentment_currency=read.currency(presented, name="presentment_currency", optional=True),
            shop_request=(request_key, request_fingerprint) if request_key and request_fingerprint else None,
        )


@dataclass(frozen=True)
class RefundPage:
    """One page of `GET /v1/refunds?charge=...`: the charge's refunds, newest first."""

    refunds: tuple[RefundReport, ...]
    has_more: bool

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> RefundPage:
        data = read.field(obj, "data", list)
        items = (read.nested({"object": "list", "item": item}, "item") for item in data)
        return cls(tuple(RefundReport.from_dict(item) for item in items), obj.get("has_more") is True)


@dataclass(frozen=True)
class Charge:
    id: str
    payment_intent_id: str | None
    amount: int
    amount_refunded: int
    currency: str
    livemode: bool
    # The charge's refunds, when the event carries them (`refunds.data`): not included unless
    # expanded since 2022-11-15 (the pinned version sends none), and a page of 10 before that.
    refunds: tuple[RefundReport, ...] = ()
    # `refunds` is every refund of the charge: the list is there and has no more pages.
    refunds_complete: bool = False

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Charge:
        listed = read.nested(obj, "refunds")
        data = read.field(listed, "data", list, optional=True)
        complete = data is not None and listed.get("has_more") is False
        data = data or []
        return cls(
            id=read.stripe_id(obj, "id"),
            payment_intent_id=read.expandable_id(obj, "payment_intent"),
            amount=read.field(obj, "amount", int),
            amount_refunded=read.field(obj, "amount_refunded", int),
            currency=read.currency(obj) or "",
            livemode=read.livemode(obj),
            refunds=tuple(RefundReport.from_dict(read.nested({"object": "charge.refunds", "item": item}, "item"))
                          for item in data),
            refunds_complete=complete,
        )


@dataclass(frozen=True)
class Dispute:
    id: str
    charge_id: str | None
    payment_intent_id: str | None
    status: str
    livemode: bool

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Dispute:
        return cls(
            id=read.stripe_id(obj, "id"),
            charge_id=read.expandable_id(obj, "charge"),
            payment_intent_id=read.expandable_id(obj, "payment_intent"),
            status=read.field(obj, "status", str),
            livemode=read.livemode(obj),
        )


@dataclass(frozen=True)
class EarlyFraudWarning:
    """Radar's warning that a card network reported the charge as fraud (most become disputes)."""

    id: str
    charge_id: str | None
    payment_intent_id: str | None
    actionable: bool

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> EarlyFraudWarning:
        return cls(
            id=read.stripe_id(obj, "id"),
            charge_id=read.expandable_id(obj, "charge"),
            payment_intent_id=read.expandable_id(obj, "payment_intent"),
            actionable=obj.get("actionable") is not False,
        )
