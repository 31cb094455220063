"""One JSON log line per request (with X-Request-ID), and GET /metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Blueprint, Flask, Response, current_app, g, request

from paystore import logs, metrics
from paystore.api.auth import require_token

log = logging.getLogger("paystore.request")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

bp = Blueprint("metrics", __name__)
bp.before_request(require_token)


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = metrics.render(current_app.extensions["paystore"].engine)
    return Response(body, content_type=content_type)


def _start() -> None:
    offered = request.headers.get("X-Request-ID", "")
    g.request_id = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    g.started = time.perf_counter()
    logs.start_request(request_id=g.request_id)


def _finish(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    fields = logs.end_request()
    if not log.isEnabledFor(logging.INFO):
        return response  # PAYSTORE_LOG_LEVEL=WARNING: no request line, so nothing to gather for it
    fields.update(
        method=request.method,
        route=request.url_rule.rule if request.url_rule else None,
        path=request.path,
        status=response.status_code,
        duration_ms=round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 3),
    )
    log.info("%s %s %s", request.method, request.path, response.status_code, extra=fields)
    return response


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(_start)
    app.after_request(_finish)
