"""The buyer's return from Stripe Checkout (public: it is the buyer's browser), a shop's refresh
of one purchase, and the access question (both bearer-token protected)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, jsonify, redirect, request
from flask.typing import ResponseReturnValue
from markupsafe import escape

from paystore.api import get_db
from paystore.api.auth import require_token
from paystore.api.errors import ApiError
from paystore.api.purchases import PROGRAM_ID, USER_ID
from paystore.domain.purchase import Purchase, PurchaseStatus, purchase_json
from paystore.extension import current_paystore
from paystore.services.purchasing import access, fulfilment

return_bp = Blueprint("checkout_return", __name__)
bp = Blueprint("buyer", __name__)
bp.before_request(require_token)

# What the buyer reads on the result page, one sentence per status (unit-tested to cover them all).
SENTENCES: dict[PurchaseStatus, str] = {
    PurchaseStatus.COMPLETED: "Thank you: your payment was received and your purchase is complete.",
    PurchaseStatus.AWAITING_PAYMENT: (
        "Your payment is on its way. Your bank may take a few days; you will have access once it arrives."
    ),
    PurchaseStatus.PENDING: "We have not received your payment yet. If you have just paid, reload this page in a moment.",
    PurchaseStatus.FAILED: "Your payment did not go through. Nothing was charged; you may try again.",
    PurchaseStatus.EXPIRED: "This checkout expired before it was paid. Nothing was charged; you may start again.",
    PurchaseStatus.REFUNDED: "This purchase was refunded.",
    PurchaseStatus.DISPUTED: "This payment is disputed with your bank; your access stays open while it is reviewed.",
    PurchaseStatus.DISPUTE_LOST: "This payment was reversed by your bank after a dispute.",
    PurchaseStatus.NEEDS_REVIEW: (
        "We received your payment but must check it by hand before your access opens. We will be in touch."
    ),
}


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


def _result_page(purchase: Purchase) -> Response:
    status = str(purchase.status)
    sentence = SENTENCES[purchase.status]
    html = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Your purchase</title></head>\n"
        f"<body><h1>Your purchase</h1>\n<p>Status: <span id=\"purchase-status\">{escape(status)}</span></p>\n"
        f"<p id=\"purchase-message\">{escape(sentence)}</p>\n"
        f"<p>Purchase <code>{escape(str(purchase.id))}</code></p></body></html>\n"
    )
    return Response(html, content_type="text/html; charset=utf-8")


@return_bp.get("/checkout/return")
def checkout_return() -> ResponseReturnValue:
    ext = current_paystore()
    session_id = request.args.get("session_id", "")
    purchase = fulfilment.return_from_checkout(get_db(), ext.gateway, ext.settings, ext.stripe_reads, session_id)
    if ext.settings.return_url:
        return redirect(_with_query(ext.settings.return_url, purchase_id=str(purchase.id), status=str(purchase.status)), 303)
    return _result_page(purchase)


@bp.post("/purchases/<purchase_id>/refresh")
def refresh_purchase(purchase_id: str) -> ResponseReturnValue:
    ext = current_paystore()
    purchase = fulfilment.refresh(get_db(), ext.gateway, ext.settings, purchase_id)
    return jsonify(purchase_json(purchase))


@bp.get("/users/<user_id>/programs/<program_id>/access")
def program_access(user_id: str, program_id: str) -> ResponseReturnValue:
    if not USER_ID.fullmatch(user_id) or not PROGRAM_ID.fullmatch(program_id):
        raise ApiError(400, "invalid_request", f"user_id must match {USER_ID.pattern}, program_id {PROGRAM_ID.pattern}")
    found = access.program_access(get_db(), user_id, program_id)
    purchase = found.purchase
    return jsonify(
        access=found.access,
        purchase_id=str(purchase.id) if purchase else None,
        status=str(purchase.status) if purchase else None,
    )
