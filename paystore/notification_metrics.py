"""Outbox metrics, read from the database at scrape time (as paystore_purchases is).

The deliverer is a separate process (a CLI run or a service unit) with no /metrics of its own,
so its failures are counted in the rows themselves and exposed here by the serving process.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text

_QUERY = text(
    "SELECT count(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL),"
    " coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL)), 0),"
    " count(*) FILTER (WHERE dead_at IS NOT NULL),"
    " coalesce(sum(failed_attempts), 0)"
    " FROM notifications"
)


class NotificationBacklog(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self.engine.connect() as conn:
            backlog, oldest_age, dead, failures = conn.execute(_QUERY).one()
        yield GaugeMetricFamily(
            "paystore_notifications_undelivered", "Notifications not yet delivered to the shop (not dead)", value=backlog
        )
        yield GaugeMetricFamily(
            "paystore_notifications_oldest_undelivered_age_seconds",
            "Age of the oldest undelivered notification (0 when none)", value=float(oldest_age),
        )
        yield GaugeMetricFamily(
            "paystore_notifications_dead", "Notifications whose retries ran out (see paystore notifications replay)",
            value=dead,
        )
        yield CounterMetricFamily(
            "paystore_notification_delivery_failures", "Failed notification delivery attempts", value=int(failures)
        )
