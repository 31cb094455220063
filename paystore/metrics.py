"""Prometheus metrics. Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set by paystore.gunicorn_conf)
makes every worker write its samples to files that /metrics adds up, so all workers are counted.

Gauges that describe the database are read from it at scrape time (paystore.api.observability).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

LOCK_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

webhook_events = Counter(
    "paystore_webhook_events_total", "Stripe webhook deliveries by event type and outcome", ["type", "outcome"]
)
webhook_api_version_mismatch = Counter(
    "paystore_webhook_api_version_mismatch_total",
    "Webhook deliveries rendered in another Stripe API version than paystore's pinned one", ["version"],
)
lock_wait = Histogram(
    "paystore_lock_wait_seconds", "Time spent waiting for an advisory lock", ["kind"], buckets=LOCK_WAIT_BUCKETS
)
lock_timeouts = Counter("paystore_lock_timeouts_total", "Lock waits that hit lock_timeout (answered 503)", ["kind"])
checkouts = Counter("paystore_checkout_total", "POST /checkout by outcome", ["outcome"])
stripe_latency = Histogram("paystore_stripe_request_seconds", "Stripe API call latency", ["operation"])
stripe_errors = Counter("paystore_stripe_errors_total", "Failed Stripe API calls", ["operation", "kind"])


def render(database_gauges: Collector) -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        workers = CollectorRegistry()
        MultiProcessCollector(workers)
        counted = generate_latest(workers)
    else:
        counted = generate_latest(REGISTRY)  # a single process: its own metrics
    database = CollectorRegistry()
    database.register(database_gauges)
    return counted + generate_latest(database), CONTENT_TYPE_LATEST
