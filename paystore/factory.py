"""The app factory (`create_app(test_config=None)`), as in the Flask tutorial."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy.exc import DBAPIError

from paystore import api, migrate
from paystore.api.admission import CheckoutSlots
from paystore.config import Settings
from paystore.db import make_engine, make_session_factory
from paystore.extension import Paystore
from paystore.store import locks, server
from paystore.stripe.budget import ReadBudget, SharedReads
from paystore.stripe.gateway import StripeGateway

log = logging.getLogger(__name__)
UNKNOWN_LIMIT_CONNECTIONS = 10


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

    connections = connection_budget(database_url, settings)
    reads_per_s = settings.stripe_reads_per_process()
    engine = make_engine(database_url, pool_size=connections, max_overflow=0,
                         idle_bound_ms=locks.idle_bound_ms(settings.stripe_timeout_s))
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
            reads=ReadBudget(reads_per_s, burst=max(1, int(2 * reads_per_s))),
        ),
        checkout_slots=CheckoutSlots(settings.checkout_limit(connections)),
        stripe_reads=SharedReads(settings.stripe_read_fresh_s, wait_s=settings.stripe_timeout_s * 2 + 1),
    ).install(app)
    api.register(app)
    return app


def connection_budget(database_url: str, settings: Settings) -> int:
    """The connections this process may hold: PAYSTORE_DB_CONNECTIONS, or its share of what the
    server allows (what is scarce: each checkout waiting on Stripe holds one), at most one a thread."""
    if settings.db_connections:
        return min(settings.threads, settings.db_connections)
    probe = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with probe.connect() as conn:
            limit = server.connection_limit(conn)
    except DBAPIError:
        # A process must start while its database is down (it answers 503 until it is back), so
        # it assumes a small share rather than none; the server refuses what exceeds its limit.
        log.warning("Could not read the database's connection limit: using %d connections; set "
                    "PAYSTORE_DB_CONNECTIONS to choose", UNKNOWN_LIMIT_CONNECTIONS)
        return min(settings.threads, UNKNOWN_LIMIT_CONNECTIONS)
    finally:
        probe.dispose()
    share = (limit - settings.db_reserved) // settings.db_processes
    if share < 2:
        log.warning("The database allows %d connections for %d processes (%d reserved): each gets 2",
                    limit, settings.db_processes, settings.db_reserved)
    return max(2, min(settings.threads, share))


def warn_about_missing_settings(app: Flask) -> None:
    """For the serving process: say at start-up what will not work (the CLI does not need it)."""
    ext = Paystore.of(app)
    settings, slots = ext.settings, ext.checkout_slots.limit
    connections = ext.engine.pool.size()  # type: ignore[attr-defined]
    log.info("Serving with %d threads, %d database connections, %d checkout slots (1 of %d processes)",
             settings.threads, connections, slots, settings.db_processes,
             extra={"threads": settings.threads, "db_connections": connections, "checkout_slots": slots,
                    "db_processes": settings.db_processes,
                    "stripe_reads_per_second": settings.stripe_reads_per_process()})
    if slots >= connections:
        log.warning("PAYSTORE_CHECKOUT_SLOTS >= the connections: checkouts can take every one and starve webhooks")
    if not settings.api_tokens:
        log.warning("PAYSTORE_API_TOKENS is unset: every API request will be refused with 401")
    if not settings.stripe_secret_key:
        log.warning("STRIPE_SECRET_KEY is unset: checkouts will fail with 502 until it is set")
    if not settings.stripe_webhook_secrets:
        log.warning("STRIPE_WEBHOOK_SECRET is unset: webhooks are answered 503 until it is set")
