"""paystore: sells programs through Stripe Checkout without losing or double-booking a payment.

`create_app` (paystore.factory) builds the WSGI app. It is imported on first use, not with the
package: `paystore.gunicorn_conf` must be importable before prometheus_client is, because
prometheus_client picks its multi-process storage once, at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paystore.factory import create_app, warn_about_missing_settings

__all__ = ["create_app", "warn_about_missing_settings"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from paystore import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'paystore' has no attribute {name!r}")
