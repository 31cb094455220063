"""Checkout and purchase routes (bearer-token protected)."""

from __future__ import annotations

import re

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from paystore import logs, metrics
from paystore.api import get_db
from paystore.api.auth import require_token
from paystore.api.errors import ApiError, error_code
from paystore.domain.purchase import MAX_EMAIL_LENGTH, purchase_json
from paystore.domain.refund import refund_json
from paystore.extension import current_paystore
from paystore.inputs import UNSTORABLE, UnacceptableJson, loads_bounded, storable_text
from paystore.services.purchasing import checkout, purchases, refunds
from paystore.stripe.fields import MAX_AMOUNT

bp = Blueprint("purchases", __name__)
bp.before_request(require_token)

# No colons or whitespace: ids become parts of lock keys and URLs.
USER_ID = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")
PROGRAM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# An address Stripe takes for a customer and a receipt, in ASCII: an RFC 5322 dot-atom name of at
# most 64 characters (no quotes, commas, angle brackets, or leading, trailing or double dots), and a
# domain of letter-digit-hyphen labels ending in a top-level name (punycode for an international
# one); at most MAX_EMAIL_LENGTH characters in all. Stripe may refuse an address outside
# this with a 400 that paystore could only pass on as "Stripe unavailable": it is refused here instead.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})")
_CHECKOUT_FIELDS = {"user_id", "program_id", "email"}


def _checkout_body() -> tuple[str, str, str | None]:
    if not request.is_json:
        raise ApiError(400, "invalid_body", "the body must be a JSON object sent with Content-Type: application/json")
    try:
        body = loads_bounded(request.get_data(cache=False))
    except UnacceptableJson as exc:
        raise ApiError(400, "invalid_body", f"the body must be a JSON object: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    unknown = sorted(set(body) - _CHECKOUT_FIELDS)
    if unknown:
        named = ", ".join(storable_text(name)[:40] for name in unknown[:5])
        raise ApiError(400, "invalid_body", f"unknown fields: {named}")
    for name, pattern in (("user_id", USER_ID), ("program_id", PROGRAM_ID)):
        value = body.get(name)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ApiError(400, "invalid_body", f"{name} must be a string matching {pattern.pattern}")
    email = body.get("email")
    if email is not None and not (isinstance(email, str) and len(email) <= MAX_EMAIL_LENGTH and EMAIL.fullmatch(email)
                                  and not UNSTORABLE.search(email)):
        raise ApiError(400, "invalid_body", "email must be an ASCII email address name@domain.tld (no quotes, commas or"
                                            " angle brackets; no empty, leading or trailing dots; letters, digits and"
                                            f" inner hyphens in the domain), at most {MAX_EMAIL_LENGTH} characters")
    return body["user_id"], body["program_id"], email


@bp.post("/checkout")
def create_checkout() -> ResponseReturnValue:
    ext = current_paystore()
    try:
        user_id, program_id, email = _checkout_body()
        with ext.checkout_slots.take():
            result = checkout.start_checkout(get_db(), ext.gateway, ext.settings, user_id, program_id, email)
    except Exception as exc:
        metrics.checkouts.labels(error_code(exc)).inc()
        raise
    metrics.checkouts.labels("created" if result.created else "existing").inc()
    logs.bind(purchase_id=str(result.purchase.id))
    return jsonify(purchase_json(result.purchase)), 201 if result.created else 200


@bp.get("/purchases/<purchase_id>")
def get_purchase(purchase_id: str) -> ResponseReturnValue:
    return jsonify(purchase_json(purchases.get_purchase(get_db(), purchase_id)))


_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, as Stripe takes them


def _refund_body() -> tuple[int | None, str | None]:
    data = request.get_data(cache=False)
    if not data.strip():
        return None, None
    if not request.is_json:
        raise ApiError(400, "invalid_body", "the body must be a JSON object sent with Content-Type: application/json")
    try:
        body = loads_bounded(data)
    except UnacceptableJson as exc:
        raise ApiError(400, "invalid_body", f"the body must be a JSON object: {exc}") from None
    if not isinstance(body, dict) or set(body) - {"amount", "reason"}:
        raise ApiError(400, "invalid_body", "the body is {\"amount\"?: integer > 0, \"reason\"?: string}")
    amount, reason = body.get("amount"), body.get("reason")
    if isinstance(amount, float) and amount.is_integer():  # JSON's 404.0 is the integer 404
        amount = int(amount)
    if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= MAX_AMOUNT):
        raise ApiError(400, "invalid_body", "amount must be a positive integer in minor units")
    if reason is not None and reason not in refunds.REASONS:
        raise ApiError(400, "invalid_body", f"reason must be one of {', '.join(refunds.REASONS)}")
    return amount, reason


@bp.post("/purchases/<purchase_id>/refunds")
def refund_purchase(purchase_id: str) -> ResponseReturnValue:
    key = request.headers.get("Idempotency-Key", "")
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(400, "idempotency_key_required",
                       "an Idempotency-Key header (1 to 255 printable characters) is required: a retry must not refund twice")
    amount, reason = _refund_body()
    ext = current_paystore()
    answer = refunds.refund(get_db(), ext.gateway, ext.settings, purchase_id, amount, reason, key)
    logs.bind(purchase_id=str(answer.purchase.id))
    return jsonify(refund=refund_json(answer.refund), purchase=purchase_json(answer.purchase)), 202


@bp.get("/users/<user_id>/purchases")
def list_user_purchases(user_id: str) -> ResponseReturnValue:
    # Wider than the column, or holding what PostgreSQL refuses: no purchase can have it.
    if len(user_id) > 128 or UNSTORABLE.search(user_id):
        raise ApiError(400, "invalid_user_id", "user_id must be at most 128 characters, without NUL")
    found = purchases.list_user_purchases(get_db(), user_id)
    return jsonify(purchases=[purchase_json(p) for p in found])
