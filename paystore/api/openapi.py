"""GET /openapi.json: the API's OpenAPI 3.1 description (no token), a static file of the package."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from flask import Blueprint, Response, current_app

bp = Blueprint("openapi", __name__)


@cache
def document() -> dict[str, Any]:
    """The document, read once per process (tests validate answers against it too)."""
    return json.loads(resources.files("paystore.api").joinpath("openapi.json").read_text(encoding="utf-8"))


@cache
def _serialized() -> bytes:
    return json.dumps(document(), separators=(",", ":")).encode()


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return current_app.response_class(_serialized(), mimetype="application/json")
