"""The one place that talks to stripe-python. Everything else uses `StripeGateway`."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
import stripe

# Bound once: stripe-python resolves its top-level names lazily, with an import_module call on
# every attribute access (about 1 us each, on every checkout and webhook).
from stripe import (
    APIConnectionError,
    IdempotencyError,
    InvalidRequestError,
    RateLimitError,
    SignatureVerificationError,
    StripeError,
    WebhookSignature,
)

from paystore import metrics
from paystore.inputs import UnacceptableJson, loads_bounded
from paystore.stripe import calls, fields
from paystore.stripe.budget import ReadBudget
from paystore.stripe.calls import Call, CheckoutRequest
from paystore.stripe.errors import (
    InvalidStripeObject,
    InvalidWebhook,
    StripeIdempotencyConflict,
    StripeRateLimited,
    StripeUnavailable,
    WebhookNotConfigured,
)
from paystore.stripe.money_objects import RefundPage, RefundReport
from paystore.stripe.objects import CheckoutSession, Event, EventPage
from paystore.stripe.version import STRIPE_API_VERSION

log = logging.getLogger(__name__)

WEBHOOK_TOLERANCE_S = 300
T = TypeVar("T")
# Stripe's messages may quote a key (an API key's prefix, an idempotency key): never passed on.
_KEYS = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_\w*|\b(?:refund|checkout|customer|early_fraud_warning):\S+")


class StripeRefused(StripeUnavailable):
    """Stripe answered that this request cannot be done (HTTP 400/404, `invalid_request_error`):
    trying again as it is will not help. `code` is Stripe's (e.g. `charge_already_refunded`),
    `message` its words, with any key taken out."""

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _refusal(exc: InvalidRequestError) -> StripeRefused:
    said = str(exc.user_message or "Stripe refused the request")
    return StripeRefused(exc.code, _KEYS.sub("[key]", said)[:500])


def _payment_intent_status(obj: dict[str, Any]) -> str:
    status = obj.get("status")
    if not isinstance(status, str):
        raise InvalidStripeObject("payment_intent.status is missing")
    return status


def _customer_id(obj: dict[str, Any]) -> str:
    customer_id = fields.stripe_id(obj, "id")
    if not customer_id.startswith("cus_"):
        raise InvalidStripeObject("customer.id must start with cus_")
    return customer_id


class StripeGateway:
    def __init__(
        self,
        secret_key: str,
        webhook_secrets: tuple[str, ...],
        *,
        api_base: str | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 10,
        reads: ReadBudget | None = None,
    ) -> None:
        self._webhook_secrets = webhook_secrets
        self._reads = reads or ReadBudget(per_second=10.0, burst=20)
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
            stripe_version=STRIPE_API_VERSION,
            # No automatic retries: the caller holds a database lock while it waits, and the
            # bound must be `timeout_s`. A retried checkout is a new purchase with a new key.
            max_network_retries=0,
        )

    def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession:
        session = self._send(calls.create_checkout_session(request), CheckoutSession.from_dict)
        if not session.url:
            raise StripeUnavailable("Stripe answered without a checkout URL")
        return session

    def retrieve_checkout_session(self, session_id: str, *, wait_s: float = 0.0) -> CheckoutSession:
        """The session now. A read: it waits at most `wait_s` for the read budget (budget.py)."""
        self._read(wait_s)
        return self._send(calls.retrieve_checkout_session(session_id), CheckoutSession.from_dict)

    def payment_intent_status(self, payment_intent_id: str, *, wait_s: float = 0.0) -> str:
        """`succeeded`, `processing`, `requires_payment_method` (a delayed payment failed), ..."""
        self._read(wait_s)
        return self._send(calls.retrieve_payment_intent(payment_intent_id), _payment_intent_status)

    def _read(self, wait_s: float) -> None:
        if not self._reads.take(wait_s):
            metrics.stripe_errors.labels("read", "budget").inc()
            raise StripeRateLimited("paystore's budget for Stripe reads is spent for this second")

    def create_customer(self, user_id: str, email: str | None, livemode: bool) -> str:
        """A new Stripe Customer for the user; its id."""
        return self._send(calls.create_customer(user_id, email, livemode), _customer_id)

    def create_refund(self, payment_intent_id: str, amount: int | None, reason: str | None, metadata: dict[str, str],
                      idempotency_key: str) -> RefundReport:
        """Refund the payment (Stripe's answer: the refund, usually `pending` or `succeeded`)."""
        call = calls.create_refund(payment_intent_id, amount, reason, metadata, idempotency_key)
        return self._send(call, RefundReport.from_dict)

    def list_refunds(self, charge_id: str) -> tuple[RefundReport, ...]:
        """Every refund of the charge, whatever its status, following Stripe's pages (a read; no
        budget wait: it answers an event Stripe retries anyway)."""
        found: list[RefundReport] = []
        after = None
        while True:
            page = self._send(calls.list_refunds(charge_id, starting_after=after), RefundPage.from_dict)
            found += page.refunds
            if not page.has_more or not page.refunds:
                return tuple(found)
            after = page.refunds[-1].id

    def list_events(self, types: tuple[str, ...], created_gte: int, *, undelivered_only: bool,
                    starting_after: str | None = None) -> EventPage:
        """One page of Stripe's events (newest first), as stored payloads."""
        call = calls.list_events(types, created_gte, undelivered_only=undelivered_only, starting_after=starting_after)
        return self._send(call, EventPage.from_dict)

    def _send(self, call: Call, parse: Callable[[dict[str, Any]], T]) -> T:
        """The one way out to Stripe. raw_request answers the JSON as a dict, without building (and
        then flattening) a tree of StripeObjects; errors are raised exactly as by the typed calls."""
        name = call.operation
        options = {"idempotency_key": call.idempotency_key} if call.idempotency_key else {}
        started = time.perf_counter()
        try:
            answer = self._client.raw_request(call.method, call.path, **call.params, **options)
            return parse(answer.data)
        except RateLimitError as exc:
            metrics.stripe_errors.labels(name, "rate_limited").inc()
            log.warning("Stripe %s refused for its rate limit: request %s", name, exc.request_id)
            raise StripeRateLimited("Stripe's rate limit was reached") from None
        except IdempotencyError as exc:
            metrics.stripe_errors.labels(name, "idempotency").inc()
            log.error("Stripe %s refused a reused idempotency key: request %s", name, exc.request_id)
            raise StripeIdempotencyConflict("this idempotency key was used with other parameters") from None
        except APIConnectionError as exc:
            metrics.stripe_errors.labels(name, "connection").inc()
            log.error("Stripe %s failed: no answer (%s)", name, type(exc).__name__)
            raise StripeUnavailable("Stripe could not be reached or did not answer in time") from None
        except InvalidRequestError as exc:
            metrics.stripe_errors.labels(name, "refused").inc()
            log.warning("Stripe %s refused: HTTP %s, code %s, request %s", name, exc.http_status, exc.code, exc.request_id)
            raise _refusal(exc) from None
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
