"""The one Stripe API version paystore speaks, and what an event of another version may mean.

Why one pinned version: Stripe renders every object in the API version of the request (ours,
sent on every call by the gateway) and every webhook event in the version of the *endpoint* that
receives it. A field may change its meaning between versions (before 2025-03-31.basil, a
Checkout Session with Adaptive Pricing carried the buyer's currency in `currency`), so paystore
pins one version, the one stripe-python 16.1 was generated for: its typed request parameters,
which the tests check every request against, describe exactly what paystore sends. The webhook
endpoint must be created with the same version (README, "Real Stripe").

An event of another version is applied when every field paystore reads means the same in both
(counted in `paystore_webhook_api_version_mismatch_total{version}` and logged at WARNING), and
refused when a known change touches a field paystore reads (`incompatibility`).
"""

from __future__ import annotations

from typing import Any

STRIPE_API_VERSION = "2026-10-28.endive"

# Before this release, a Checkout Session that used Adaptive Pricing held the buyer's currency
# and amounts in `currency` / `amount_*`, and the integration's in `currency_conversion`.
BASIL = "2025-03-31.basil"


def _date(version: str) -> str:
    return version.split(".", 1)[0]  # "2025-03-31.basil" -> "2025-03-31": ISO dates sort as strings


def incompatibility(api_version: str | None, event_type: str, obj: dict[str, Any]) -> str | None:
    """Why an event of `api_version` cannot be read as the pinned version, or None if it can."""
    if api_version is None or api_version == STRIPE_API_VERSION:
        return None
    if (event_type.startswith("checkout.session.") and _date(api_version) < _date(BASIL)
            and obj.get("currency_conversion") is not None):
        return (f"event of API version {api_version}: before {BASIL} an Adaptive Pricing session's `currency` and "
                f"amounts are the buyer's, not the program's; create the webhook endpoint with {STRIPE_API_VERSION}")
    return None
