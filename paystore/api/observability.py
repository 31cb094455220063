"""One JSON log line per request (with X-Request-ID), and GET /metrics.

The gauges that describe the database (purchases by status, the outbox backlog) are read at
scrape time: the notification deliverer is a separate process with no /metrics of its own, so
its failures are counted in the rows themselves and shown here by the serving process.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, g, request
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from paystore import logs, metrics
from paystore.api.auth import require_token
from paystore.extension import current_paystore
from paystore.store import reports

log = logging.getLogger("paystore.request")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

bp = Blueprint("metrics", __name__)
bp.before_request(require_token)


class DatabaseGauges(Collector):
    """`paystore_purchases{status}` and the outbox backlog, read at scrape time (two cheap queries)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self.engine.connect() as conn:
            by_status = reports.purchases_by_status(conn)
            backlog = reports.notification_backlog(conn)
        purchases = GaugeMetricFamily("paystore_purchases", "Purchases by status", labels=["status"])
        for status, count in by_status.items():
            purchases.add_metric([str(status)], count)
        yield purchases
        yield GaugeMetricFamily(
            "paystore_notifications_undelivered", "Notifications not yet delivered to the shop (not dead)",
            value=backlog.undelivered,
        )
        yield GaugeMetricFamily(
            "paystore_notifications_oldest_undelivered_age_seconds",
            "Age of the oldest undelivered notification (0 when none)", value=backlog.oldest_undelivered_age_s,
        )
        yield GaugeMetricFamily(
            "paystore_notifications_dead", "Notifications whose retries ran out (see paystore notifications replay)",
            value=backlog.dead,
        )
        yield CounterMetricFamily(
            "paystore_notification_delivery_failures", "Failed notification delivery attempts", value=backlog.failed_attempts
        )



@bp.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = metrics.render(DatabaseGauges(current_paystore().engine))
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
