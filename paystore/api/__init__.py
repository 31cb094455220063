"""HTTP layer: thin routes that parse, call one service function, and map errors."""

from __future__ import annotations

from flask import Flask, g
from sqlalchemy.orm import Session

from paystore.extension import current_paystore


def get_db() -> Session:
    """This request's database session, closed on teardown."""
    if "db" not in g:
        g.db = current_paystore().session_factory()
    return g.db


def _close_db(_exc: BaseException | None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def register(app: Flask) -> None:
    from paystore.api import buyer, errors, health, observability, openapi, purchases, webhooks

    observability.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(purchases.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(buyer.return_bp)
    app.register_blueprint(buyer.bp)
    app.register_blueprint(openapi.bp)
    errors.register(app)
    app.teardown_appcontext(_close_db)
