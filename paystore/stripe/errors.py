"""What can go wrong between paystore and Stripe. Messages are safe to show: no secrets."""

from __future__ import annotations

from paystore.errors import Refusal


class StripeUnavailable(Exception):
    """Stripe failed, timed out or refused; nothing paystore meant to record was recorded."""


class InvalidWebhook(Refusal):
    """Bad signature, stale timestamp or missing header: not from Stripe, as far as we can tell."""


class WebhookNotConfigured(Refusal):
    """No signing secret is configured: answer 5xx so that Stripe keeps the event and retries."""


class InvalidStripeObject(Refusal, ValueError):
    """A Stripe object lacks a field paystore needs, or holds one it could not store; the message
    names the field."""


class StripeIdempotencyConflict(Exception):
    """Stripe saw this idempotency key before, with other parameters: nothing new was made."""


class StripeRateLimited(Refusal):
    """Stripe answered 429 (its rate limit), or paystore's own budget for Stripe reads is spent:
    nothing was done, try again in a moment."""
