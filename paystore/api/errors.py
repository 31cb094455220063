"""Every error is `{"error": {"code", "message"}}`: one table maps each exception to its status,
code, Retry-After and log line, and the metric label of a refused request is its code."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from paystore.api.admission import Overloaded
from paystore.services.purchasing.errors import (
    AlreadyPurchased,
    CheckoutConflict,
    IdempotencyKeyReused,
    InvalidSessionId,
    NotRefundable,
    PartialRefundInAnotherCurrency,
    PaymentInProgress,
    ProgramNotFound,
    PurchaseNotFound,
    RefundRefused,
    RefundTooLarge,
    SessionMismatch,
    SessionNotFound,
)
from paystore.services.stripe_events.errors import IncompatibleApiVersion, PurchaseNotYetKnown, UnrecoverablePurchase
from paystore.store import DATABASE_UNAVAILABLE
from paystore.store.locks import LockTimeout
from paystore.stripe.errors import (
    InvalidStripeObject,
    InvalidWebhook,
    StripeIdempotencyConflict,
    StripeRateLimited,
    StripeUnavailable,
    WebhookNotConfigured,
)

log = logging.getLogger(__name__)

RETRY_AFTER_S = "1"
INTERNAL_ERROR = "internal_error"


class ApiError(Exception):
    """A request the route itself refuses (bad body, bad path parameter, no token)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Rule:
    status: int
    code: str
    retry: bool = False  # a 503 the caller (or Stripe) should retry shortly: Retry-After
    message: str | None = None  # said instead of the exception's own words (which may hold detail)
    then: str = ""  # added to the exception's words: what happened, what to do
    log_level: int | None = None
    # What the log line says of the exception (a driver error's text may quote the connection).
    log_cause: Callable[[BaseException], object] = str
    location: bool = False  # the purchase in the way, as a Location header


def _driver_error_name(exc: BaseException) -> str:
    return type(getattr(exc, "orig", None) or exc).__name__


_UNAVAILABLE = Rule(503, "database_unavailable", retry=True, message="the database is unavailable; retry shortly",
                    log_level=logging.ERROR, log_cause=_driver_error_name)

# Looked up along the exception's classes, most specific first (PaymentInProgress is an
# AlreadyPurchased with a code of its own).
RULES: dict[type[BaseException], Rule] = {
    ProgramNotFound: Rule(404, "program_not_found"),
    PurchaseNotFound: Rule(404, "purchase_not_found"),
    PaymentInProgress: Rule(409, "payment_in_progress", location=True),
    AlreadyPurchased: Rule(409, "already_purchased", location=True),
    CheckoutConflict: Rule(409, "checkout_conflict"),
    InvalidSessionId: Rule(400, "invalid_session_id"),
    SessionNotFound: Rule(404, "session_not_found"),
    SessionMismatch: Rule(409, "session_mismatch", then="; nothing was changed"),
    Overloaded: Rule(503, "overloaded", retry=True, then="; retry shortly"),
    StripeUnavailable: Rule(502, "stripe_unavailable", then="; nothing was charged or saved, try again"),
    StripeRateLimited: Rule(503, "stripe_rate_limited", retry=True, then="; nothing was done, retry shortly",
                            log_level=logging.WARNING),
    NotRefundable: Rule(409, "purchase_not_refundable"),
    RefundTooLarge: Rule(400, "refund_exceeds_remaining"),
    PartialRefundInAnotherCurrency: Rule(400, "partial_refund_unsupported"),
    RefundRefused: Rule(409, "refund_refused", then="; nothing was refunded", log_level=logging.WARNING),
    IdempotencyKeyReused: Rule(409, "idempotency_key_reused", then="; nothing was refunded"),
    StripeIdempotencyConflict: Rule(409, "idempotency_key_reused", then="; nothing was refunded"),
    InvalidWebhook: Rule(400, "invalid_webhook"),
    InvalidStripeObject: Rule(400, "invalid_payload"),
    WebhookNotConfigured: Rule(503, "webhook_not_configured", retry=True, log_level=logging.ERROR),
    PurchaseNotYetKnown: Rule(503, "purchase_not_yet_known", retry=True, then="; retry later", log_level=logging.WARNING),
    UnrecoverablePurchase: Rule(500, "purchase_unrecoverable", then="; recorded as failed for replay"),
    IncompatibleApiVersion: Rule(500, "unsupported_api_version", then="; recorded as failed, nothing applied",
                                 log_level=logging.ERROR),
    LockTimeout: Rule(503, "lock_timeout", retry=True, message="the purchase is busy; retry shortly",
                      log_level=logging.WARNING),
    **dict.fromkeys(DATABASE_UNAVAILABLE, _UNAVAILABLE),
}


def rule_for(exc: BaseException) -> Rule | None:
    return next((RULES[kind] for kind in type(exc).__mro__ if kind in RULES), None)


def error_code(exc: BaseException) -> str:
    """The code a request failing with `exc` is answered with: also its metric label."""
    if isinstance(exc, ApiError):
        return exc.code
    if isinstance(exc, HTTPException):
        return _http_code(exc)
    rule = rule_for(exc)
    return rule.code if rule else INTERNAL_ERROR


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_")


def error_response(status: int, code: str, message: str, retry_after: str | None = None) -> Response:
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


def _answer(rule: Rule, exc: BaseException) -> Response:
    message = rule.message or f"{exc}{rule.then}"
    if rule.log_level is not None:
        log.log(rule.log_level, "Answered %d %s: %s", rule.status, rule.code, rule.log_cause(exc))
    response = error_response(rule.status, rule.code, message, RETRY_AFTER_S if rule.retry else None)
    if rule.location:
        response.headers["Location"] = f"/purchases/{exc.purchase_id}"  # type: ignore[attr-defined]
    return response


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(RequestRedirect)
    def no_redirects(exc: RequestRedirect) -> Response:
        # Routing may still want to redirect (a rule's canonical form); the API answers JSON only.
        return error_response(404, "not_found", "no such resource")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = error_response(exc.code or 500, _http_code(exc), exc.description or exc.name)
        # Keep what Werkzeug says beside the body, e.g. a 405's Allow header (RFC 9110).
        response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
        return response

    for kind, rule in RULES.items():
        app.register_error_handler(kind, lambda exc, rule=rule: _answer(rule, exc))

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("Unhandled error")
        return error_response(500, INTERNAL_ERROR, "internal error")
