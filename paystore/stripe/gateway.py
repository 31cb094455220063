"""The one place that talks to stripe-python. Everything else uses `StripeGateway`."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import stripe

# Bound once: stripe-python resolves its top-level names lazily, with an import_module call on
# every attribute access (about 1 us each, on every checkout and webhook).
from stripe import (
    APIConnectionError,
    SignatureVerificationError,
    StripeError,
    StripeResponse,
    WebhookSignature,
)

from paystore import metrics
from paystore.inputs import UnacceptableJson, loads_bounded
from paystore.stripe.errors import InvalidStripeObject, InvalidWebhook, StripeUnavailable, WebhookNotConfigured
from paystore.stripe.objects import CheckoutSession, Event

log = logging.getLogger(__name__)

WEBHOOK_TOLERANCE_S = 300
T = TypeVar("T")


def _payment_intent_status(obj: dict[str, Any]) -> str:
    status = obj.get("status")
    if not isinstance(status, str):
        raise InvalidStripeObject("payment_intent.status is missing")
    return status


@dataclass(frozen=True)
class CheckoutRequest:
    purchase_id: uuid.UUID
    user_id: str
    program_id: str
    program_name: str
    amount: int
    currency: str
    success_url: str
    cancel_url: str


class StripeGateway:
    def __init__(
        self,
        secret_key: str,
        webhook_secrets: tuple[str, ...],
        *,
        api_base: str | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 10,
    ) -> None:
        self._webhook_secrets = webhook_secrets
        # Proxies are read from the environment once, here, instead of on every call: requests
        # scans all of os.environ per request when trust_env is on (a measurable share of a
        # checkout's CPU). One session shared by the threads, its pool as large as their number.
        http = requests.Session()
        http.trust_env = False
        http.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=max_connections))
        http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=max_connections))
        proxies = requests.utils.get_environ_proxies(api_base or "https://api.stripe.com")
        self._client = stripe.StripeClient(
            secret_key or "sk_unset",
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.RequestsClient(timeout=timeout_s, session=http, proxy=proxies or None),
            # No automatic retries: the caller holds a database lock while it waits, and the
            # bound must be `timeout_s`. A retried checkout is a new purchase with a new key.
            max_network_retries=0,
        )

    def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession:
        metadata = {
            "purchase_id": str(request.purchase_id),
            "user_id": request.user_id,
            "program_id": request.program_id,
        }
        params = {
            "mode": "payment",
            "client_reference_id": str(request.purchase_id),
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency,
                        "unit_amount": request.amount,
                        "product_data": {"name": request.program_name},
                    },
                }
            ],
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
        }
        # raw_request: the answer's JSON as a dict, without building (and then flattening) a tree
        # of StripeObjects; errors are raised exactly as by the typed call.
        session = self._call(
            "checkout.sessions.create", CheckoutSession.from_dict, self._client.raw_request, "post", "/v1/checkout/sessions",
            **params, idempotency_key=f"checkout:{request.purchase_id}",
        )
        if not session.url:
            raise StripeUnavailable("Stripe answered without a checkout URL")
        return session

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        return self._call(
            "checkout.sessions.retrieve", CheckoutSession.from_dict, self._client.v1.checkout.sessions.retrieve, session_id
        )

    def payment_intent_status(self, payment_intent_id: str) -> str:
        """`succeeded`, `processing`, `requires_payment_method` (a delayed payment failed), ..."""
        return self._call(
            "payment_intents.retrieve", _payment_intent_status, self._client.v1.payment_intents.retrieve, payment_intent_id
        )

    def _call(
        self, name: str, parse: Callable[[dict[str, Any]], T], method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> T:
        started = time.perf_counter()
        try:
            answer = method(*args, **kwargs)
            return parse(answer.data if isinstance(answer, StripeResponse) else answer.to_dict())
        except APIConnectionError as exc:
            metrics.stripe_errors.labels(name, "connection").inc()
            log.error("Stripe %s failed: no answer (%s)", name, type(exc).__name__)
            raise StripeUnavailable("Stripe could not be reached or did not answer in time") from None
        except StripeError as exc:
            server_side = exc.http_status is not None and exc.http_status >= 500
            metrics.stripe_errors.labels(name, "server" if server_side else "refused").inc()
            log.error(
                "Stripe %s failed: HTTP %s, code %s, request %s",
                name, exc.http_status, exc.code, exc.request_id,
            )
            if server_side:
                raise StripeUnavailable("Stripe answered with a server error") from None
            raise StripeUnavailable("Stripe refused the request") from None
        except InvalidStripeObject as exc:
            metrics.stripe_errors.labels(name, "malformed").inc()
            log.error("Stripe %s answered with an unusable object: %s", name, exc)
            raise StripeUnavailable("Stripe answered with an unusable object") from None
        finally:
            metrics.stripe_latency.labels(name).observe(time.perf_counter() - started)

    def verify_webhook(self, payload: bytes, signature_header: str | None) -> Event:
        """Check `Stripe-Signature` against every configured secret (rotation), then parse."""
        if not self._webhook_secrets:
            raise WebhookNotConfigured("STRIPE_WEBHOOK_SECRET is not set")
        if not signature_header:
            raise InvalidWebhook("missing Stripe-Signature header")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidStripeObject("malformed event: the body is not UTF-8") from None
        reason = "signature does not match"
        for secret in self._webhook_secrets:
            try:
                WebhookSignature.verify_header(text, signature_header, secret, WEBHOOK_TOLERANCE_S)
                break
            except SignatureVerificationError as exc:
                # Messages name the problem (no match, stale timestamp), never the secret.
                reason = str(exc.user_message or exc).split(" (")[0]
        else:
            raise InvalidWebhook(f"invalid Stripe-Signature: {reason}")
        # Signed but unusable: `invalid_payload`, distinct from a bad signature.
        try:
            event = Event.from_dict(loads_bounded(text), received=text)
        except UnacceptableJson as exc:
            raise InvalidStripeObject(f"malformed event: {exc}") from None
        if event.altered_strings:
            log.warning(
                "Event %s holds %d strings PostgreSQL cannot store (NUL, lone surrogate) in fields paystore "
                "does not read; stored with U+FFFD in their place", event.id, event.altered_strings,
            )
        return event
