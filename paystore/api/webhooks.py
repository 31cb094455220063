"""Stripe webhook route: verify the signature on the raw body, then hand over to the service."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from paystore import logs, metrics
from paystore.api import get_db
from paystore.locks import LockTimeout
from paystore.services import webhooks
from paystore.services.errors import PurchaseNotYetKnown
from paystore.stripe_gateway import InvalidWebhook, WebhookNotConfigured
from paystore.stripe_objects import InvalidStripeObject

bp = Blueprint("webhooks", __name__)

_WEBHOOK_FAILURES = (
    (OperationalError, "database_unavailable"),
    (InterfaceError, "database_unavailable"),
    (PoolTimeout, "database_unavailable"),
    (InvalidWebhook, "invalid"),
    (InvalidStripeObject, "invalid"),
    (WebhookNotConfigured, "not_configured"),
    (PurchaseNotYetKnown, "not_yet_known"),
    (LockTimeout, "lock_timeout"),
)


@bp.post("/webhooks/stripe")
def stripe_webhook() -> ResponseReturnValue:
    ext = current_app.extensions["paystore"]
    event_type = "unverified"
    try:
        event = ext.gateway.verify_webhook(request.get_data(cache=False), request.headers.get("Stripe-Signature"))
        event_type = event.type
        logs.bind(stripe_event_id=event.id, stripe_event_type=event.type)
        result = webhooks.handle_event(get_db(), ext.settings, event)
    except Exception as exc:
        outcome = next((name for kind, name in _WEBHOOK_FAILURES if isinstance(exc, kind)), "failed")
        metrics.webhook_events.labels(event_type, outcome).inc()
        raise
    metrics.webhook_events.labels(event.type, result.outcome).inc()
    logs.bind(outcome=result.outcome, purchase_id=str(result.purchase_id) if result.purchase_id else None)
    body = {"outcome": result.outcome, "event_id": event.id}
    if result.purchase_id is not None:
        body["purchase_id"] = str(result.purchase_id)
    return jsonify(body), 200
