"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from paystore import migrate
from paystore.api.errors import error_response
from paystore.extension import current_paystore

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    engine = current_paystore().engine
    expected = migrate.head_revision()
    current = migrate.current_revision(engine)
    if current != expected:
        return error_response(503, "schema_not_at_head", f"database schema is at {current}, expected {expected}")
    return jsonify(status="ready", schema=current)
