"""Every error is `{"error": {"code", "message"}}`; domain errors map to status codes here."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from paystore.locks import LockTimeout
from paystore.services.admission import Overloaded
from paystore.services.errors import (
    AlreadyPurchased,
    CheckoutConflict,
    ProgramNotFound,
    PurchaseNotFound,
    PurchaseNotYetKnown,
    UnrecoverablePurchase,
)
from paystore.services.fulfilment import InvalidSessionId, SessionMismatch, SessionNotFound
from paystore.stripe_gateway import (
    InvalidWebhook,
    StripeUnavailable,
    WebhookNotConfigured,
)
from paystore.stripe_objects import InvalidStripeObject

log = logging.getLogger(__name__)

RETRY_AFTER_S = "1"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, retry_after: str | None = None) -> Response:
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        # Keep what Werkzeug says beside the body, e.g. a 405's Allow header (RFC 9110).
        response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
        return response

    @app.errorhandler(ProgramNotFound)
    def program_not_found(exc: ProgramNotFound) -> Response:
        return error_response(404, "program_not_found", str(exc))

    @app.errorhandler(PurchaseNotFound)
    def purchase_not_found(exc: PurchaseNotFound) -> Response:
        return error_response(404, "purchase_not_found", str(exc))

    @app.errorhandler(AlreadyPurchased)
    def already_purchased(exc: AlreadyPurchased) -> Response:
        code = "payment_in_progress" if exc.purchase.status == "awaiting_payment" else "already_purchased"
        response = error_response(409, code, str(exc))
        response.headers["Location"] = f"/purchases/{exc.purchase.id}"
        return response

    @app.errorhandler(CheckoutConflict)
    def checkout_conflict(exc: CheckoutConflict) -> Response:
        return error_response(409, "checkout_conflict", str(exc))

    @app.errorhandler(UnrecoverablePurchase)
    def unrecoverable(exc: UnrecoverablePurchase) -> Response:
        return error_response(500, "purchase_unrecoverable", f"{exc}; recorded as failed for replay")

    @app.errorhandler(Overloaded)
    def overloaded(exc: Overloaded) -> Response:
        return error_response(503, "overloaded", f"{exc}; retry shortly", RETRY_AFTER_S)

    @app.errorhandler(InvalidSessionId)
    def invalid_session_id(exc: InvalidSessionId) -> Response:
        return error_response(400, "invalid_session_id", str(exc))

    @app.errorhandler(SessionNotFound)
    def session_not_found(exc: SessionNotFound) -> Response:
        return error_response(404, "session_not_found", str(exc))

    @app.errorhandler(SessionMismatch)
    def session_mismatch(exc: SessionMismatch) -> Response:
        return error_response(409, "session_mismatch", f"{exc}; nothing was changed")

    @app.errorhandler(StripeUnavailable)
    def stripe_unavailable(exc: StripeUnavailable) -> Response:
        return error_response(502, "stripe_unavailable", f"{exc}; nothing was charged or saved, try again")

    @app.errorhandler(InvalidWebhook)
    def invalid_webhook(exc: InvalidWebhook) -> Response:
        return error_response(400, "invalid_webhook", str(exc))

    @app.errorhandler(InvalidStripeObject)
    def invalid_stripe_object(exc: InvalidStripeObject) -> Response:
        return error_response(400, "invalid_payload", str(exc))

    @app.errorhandler(WebhookNotConfigured)
    def webhook_not_configured(exc: WebhookNotConfigured) -> Response:
        log.error("Webhook refused with 503: %s", exc)
        return error_response(503, "webhook_not_configured", str(exc), RETRY_AFTER_S)

    @app.errorhandler(PurchaseNotYetKnown)
    def purchase_not_yet_known(exc: PurchaseNotYetKnown) -> Response:
        log.warning("Webhook answered 503 for Stripe to retry: %s", exc)
        return error_response(503, "purchase_not_yet_known", f"{exc}; retry later", RETRY_AFTER_S)

    @app.errorhandler(LockTimeout)
    def lock_timeout(exc: LockTimeout) -> Response:
        log.warning("Lock wait timed out: %s", exc)
        return error_response(503, "lock_timeout", "the purchase is busy; retry shortly", RETRY_AFTER_S)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def database_unavailable(exc: Exception) -> Response:
        # Connection lost, server down, deadlock detected, pool exhausted: all worth a retry.
        log.error("Database unavailable: %s", type(getattr(exc, "orig", None) or exc).__name__)
        return error_response(503, "database_unavailable", "the database is unavailable; retry shortly", RETRY_AFTER_S)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("Unhandled error")
        return error_response(500, "internal_error", "internal error")
