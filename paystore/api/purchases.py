"""Checkout and purchase routes (bearer-token protected)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from paystore import logs, metrics
from paystore.api import get_db
from paystore.api.auth import require_token
from paystore.api.errors import RETRY_AFTER_S, ApiError, error_response
from paystore.locks import LockTimeout
from paystore.models import Purchase
from paystore.services import admission, checkout, purchases
from paystore.services.errors import AlreadyPurchased, CheckoutConflict, ProgramNotFound
from paystore.stripe_gateway import StripeUnavailable

bp = Blueprint("purchases", __name__)
bp.before_request(require_token)

# No colons or whitespace: ids become parts of lock keys and URLs.
USER_ID = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")
PROGRAM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def purchase_json(p: Purchase) -> dict[str, Any]:
    return {
        "purchase_id": str(p.id),
        "user_id": p.user_id,
        "program_id": p.program_id,
        "status": str(p.status),
        "amount": p.amount,
        "currency": p.currency,
        "refunded_amount": p.refunded_amount,
        "stripe_session_id": p.stripe_session_id,
        # Only a pending purchase has a session the buyer can still pay.
        "checkout_url": p.checkout_url if p.status == "pending" else None,
        "created_at": p.created_at.isoformat() if p.created_at else None,
        "completed_at": p.completed_at.isoformat() if p.completed_at else None,
    }


def _checkout_body() -> tuple[str, str]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    unknown = sorted(set(body) - {"user_id", "program_id"})
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown fields: {', '.join(unknown)}")
    for name, pattern in (("user_id", USER_ID), ("program_id", PROGRAM_ID)):
        value = body.get(name)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ApiError(400, "invalid_body", f"{name} must be a string matching {pattern.pattern}")
    return body["user_id"], body["program_id"]


_CHECKOUT_FAILURES = (
    (ApiError, "invalid"),
    (ProgramNotFound, "unknown_program"),
    (AlreadyPurchased, "already_purchased"),
    (CheckoutConflict, "conflict"),
    (StripeUnavailable, "stripe_failed"),
    (LockTimeout, "lock_timeout"),
    (admission.Overloaded, "overloaded"),
)


@bp.errorhandler(admission.Overloaded)
def overloaded(exc: admission.Overloaded) -> ResponseReturnValue:
    return error_response(503, "overloaded", f"{exc}; retry shortly", RETRY_AFTER_S)


@bp.post("/checkout")
def create_checkout() -> ResponseReturnValue:
    ext = current_app.extensions["paystore"]
    try:
        user_id, program_id = _checkout_body()
        with ext.checkout_slots.take():
            result = checkout.start_checkout(get_db(), ext.gateway, ext.settings, user_id, program_id)
    except Exception as exc:
        outcome = next((name for kind, name in _CHECKOUT_FAILURES if isinstance(exc, kind)), "error")
        metrics.checkouts.labels(outcome).inc()
        raise
    metrics.checkouts.labels("created" if result.created else "existing").inc()
    logs.bind(purchase_id=str(result.purchase.id))
    return jsonify(purchase_json(result.purchase)), 201 if result.created else 200


@bp.get("/purchases/<purchase_id>")
def get_purchase(purchase_id: str) -> ResponseReturnValue:
    return jsonify(purchase_json(purchases.get_purchase(get_db(), purchase_id)))


@bp.get("/users/<user_id>/purchases")
def list_user_purchases(user_id: str) -> ResponseReturnValue:
    found = purchases.list_user_purchases(get_db(), user_id)
    return jsonify(purchases=[purchase_json(p) for p in found])
