"""The app factory (`create_app(test_config=None)`), as in the Flask tutorial."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from paystore import api, migrate
from paystore.api.admission import CheckoutSlots
from paystore.config import Settings
from paystore.db import make_engine, make_session_factory
from paystore.extension import Paystore
from paystore.stripe.gateway import StripeGateway

log = logging.getLogger(__name__)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app. `test_config` overrides Settings fields by name (tests only)."""
    instance_path = os.environ.get("PAYSTORE_INSTANCE_PATH")
    # Named after the package, not this module: Flask derives the default instance folder from it
    # (`instance/` beside the package in a checkout, `<venv>/var/paystore-instance` when installed).
    app = Flask("paystore", instance_path=os.path.abspath(instance_path) if instance_path else None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # No route answers with a redirect: Werkzeug would merge `//` in a path with a 308 and an
    # HTML body, which no API client expects. Such a path is simply not found (a JSON 404).
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024  # Stripe events are far smaller
    settings = Settings.from_env()
    if test_config:
        settings = settings.with_overrides(test_config)

    database_url = settings.database_url
    if database_url is None:
        from paystore.embedded import embedded_database_url

        database_url = embedded_database_url(app.instance_path)
        migrate.upgrade_to_head(database_url)

    # One connection per thread, no overflow: a request never waits for a connection.
    engine = make_engine(database_url, pool_size=settings.threads, max_overflow=0)
    Paystore(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        gateway=StripeGateway(
            settings.stripe_secret_key,
            settings.stripe_webhook_secrets,
            api_base=settings.stripe_api_base,
            timeout_s=settings.stripe_timeout_s,
            max_connections=settings.threads,
        ),
        checkout_slots=CheckoutSlots(settings.checkout_limit),
    ).install(app)
    api.register(app)
    return app


def warn_about_missing_settings(app: Flask) -> None:
    """For the serving process: say at start-up what will not work (the CLI does not need it)."""
    settings = Paystore.of(app).settings
    if settings.checkout_limit >= settings.threads:
        log.warning("PAYSTORE_CHECKOUT_SLOTS >= PAYSTORE_THREADS: checkouts can take every thread and starve webhooks")
    if not settings.api_tokens:
        log.warning("PAYSTORE_API_TOKENS is unset: every API request will be refused with 401")
    if not settings.stripe_secret_key:
        log.warning("STRIPE_SECRET_KEY is unset: checkouts will fail with 502 until it is set")
    if not settings.stripe_webhook_secrets:
        log.warning("STRIPE_WEBHOOK_SECRET is unset: webhooks are answered 503 until it is set")
