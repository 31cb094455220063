"""Prometheus metrics. Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set by gunicorn.conf.py) makes
every worker write its samples to files that /metrics aggregates, so all workers are counted."""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import Engine, text

from paystore.models import PurchaseStatus
from paystore.notification_metrics import NotificationBacklog

LOCK_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

webhook_events = Counter(
    "paystore_webhook_events_total", "Stripe webhook deliveries by event type and outcome", ["type", "outcome"]
)
lock_wait = Histogram(
    "paystore_lock_wait_seconds", "Time spent waiting for an advisory lock", ["kind"], buckets=LOCK_WAIT_BUCKETS
)
lock_timeouts = Counter("paystore_lock_timeouts_total", "Lock waits that hit lock_timeout (answered 503)", ["kind"])
checkouts = Counter("paystore_checkout_total", "POST /checkout by outcome", ["outcome"])
stripe_latency = Histogram("paystore_stripe_request_seconds", "Stripe API call latency", ["operation"])
stripe_errors = Counter("paystore_stripe_errors_total", "Failed Stripe API calls", ["operation", "kind"])


def lock_kind(key: str) -> str:
    """unified / legacy / create / other: the label the rollout plan watches."""
    for prefix, kind in (("purchase:complete:", "unified"), ("webhook:session:", "legacy"), ("purchase:create:", "create")):
        if key.startswith(prefix):
            return kind
    return "other"


class PurchasesByState(Collector):
    """`paystore_purchases{status}`, read from the database at scrape time (one cheap query)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("paystore_purchases", "Purchases by status", labels=["status"])
        with self.engine.connect() as conn:
            counts = dict(conn.execute(text("SELECT status, count(*) FROM purchases GROUP BY status")).all())
        for status in PurchaseStatus:
            family.add_metric([str(status)], counts.get(str(status), 0))
        yield family


def render(engine: Engine) -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        workers = CollectorRegistry()
        MultiProcessCollector(workers)
        counted = generate_latest(workers)
    else:
        counted = generate_latest(REGISTRY)  # a single process: its own metrics
    database = CollectorRegistry()
    database.register(PurchasesByState(engine))
    database.register(NotificationBacklog(engine))
    return counted + generate_latest(database), CONTENT_TYPE_LATEST
