"""Stripe webhook route: verify the signature on the raw body, then hand over to the service."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from paystore import logs, metrics
from paystore.api import get_db
from paystore.api.errors import error_code
from paystore.extension import current_paystore
from paystore.services.stripe_events import webhooks

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/stripe")
def stripe_webhook() -> ResponseReturnValue:
    ext = current_paystore()
    event_type = "unverified"
    try:
        event = ext.gateway.verify_webhook(request.get_data(cache=False), request.headers.get("Stripe-Signature"))
        event_type = event.type
        logs.bind(stripe_event_id=event.id, stripe_event_type=event.type)
        result = webhooks.handle_event(get_db(), ext.gateway, ext.settings, event)
    except Exception as exc:
        metrics.webhook_events.labels(event_type, error_code(exc)).inc()
        raise
    metrics.webhook_events.labels(event.type, str(result.outcome)).inc()
    logs.bind(outcome=str(result.outcome), purchase_id=str(result.purchase_id) if result.purchase_id else None)
    body = {"outcome": str(result.outcome), "event_id": event.id}
    if result.purchase_id is not None:
        body["purchase_id"] = str(result.purchase_id)
    return jsonify(body), 200
