"""Stripe webhook route: verify the signature on the raw body, then hand over to the service."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from paystore.api import get_db
from paystore.services import webhooks

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/stripe")
def stripe_webhook() -> ResponseReturnValue:
    ext = current_app.extensions["paystore"]
    event = ext.gateway.verify_webhook(request.get_data(cache=False), request.headers.get("Stripe-Signature"))
    result = webhooks.handle_event(get_db(), ext.settings, event)
    body = {"outcome": result.outcome, "event_id": event.id}
    if result.purchase_id is not None:
        body["purchase_id"] = str(result.purchase_id)
    return jsonify(body), 200
