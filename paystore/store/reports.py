"""Read-only figures for operators: the lock report and the gauges read at scrape time.

Windows are exact durations in seconds, never calendar days: `timestamptz - interval '30 days'`
follows the session's TimeZone across daylight-saving changes, and paystore does not set one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from paystore.domain.outcome import Outcome
from paystore.domain.purchase import OPEN_STATUSES, PurchaseStatus
from paystore.models import UtcDateTime
from paystore.store.locks import PREFIXES, LockKind

_BY_KIND = text(
    """
    SELECT CASE WHEN starts_with(lock_key, :unified) THEN :unified_kind
                WHEN starts_with(lock_key, :legacy) THEN :legacy_kind
                ELSE :no_lock END AS kind,
           count(*) AS events,
           percentile_cont(0.50) WITHIN GROUP (ORDER BY lock_wait_ms) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY lock_wait_ms) AS p95,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY lock_wait_ms) AS p99,
           max(lock_wait_ms) AS max,
           max(received_at) AS last_seen
    FROM stripe_events
    WHERE received_at >= now() - make_interval(secs => :window_s)
    GROUP BY 1 ORDER BY 1
    """
).columns(last_seen=UtcDateTime)
_TOTALS = text(
    """
    SELECT (SELECT count(*) FROM purchases
             WHERE status = ANY(:open) AND created_at < now() - make_interval(secs => :stuck_s)) AS stuck,
           (SELECT count(*) FROM stripe_events WHERE outcome = :failed) AS failed,
           (SELECT max(received_at) FROM stripe_events WHERE starts_with(lock_key, :legacy)) AS last_legacy
    """
).columns(last_legacy=UtcDateTime)
_BY_STATUS = text("SELECT status, count(*) FROM purchases GROUP BY status")
_BACKLOG = text(
    "SELECT count(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL),"
    " coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL)), 0),"
    " count(*) FILTER (WHERE dead_at IS NOT NULL),"
    " coalesce(sum(failed_attempts), 0)"
    " FROM notifications"
)


@dataclass(frozen=True)
class KindStats:
    kind: str
    events: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    last_seen: datetime | None


@dataclass(frozen=True)
class LockReport:
    days: int
    kinds: list[KindStats]
    stuck_open: int
    failed_events: int
    last_legacy_use: datetime | None

    @property
    def legacy_events(self) -> int:
        return sum(k.events for k in self.kinds if k.kind == LockKind.LEGACY)


# The report's row for events that took no lock (an event that names no purchase or session).
NO_LOCK = "none"


def lock_report(db: Session, days: int, stuck_after: timedelta) -> LockReport:
    prefixes = {"unified": PREFIXES[LockKind.UNIFIED], "legacy": PREFIXES[LockKind.LEGACY]}
    kinds_of = {"unified_kind": str(LockKind.UNIFIED), "legacy_kind": str(LockKind.LEGACY), "no_lock": NO_LOCK}
    window = timedelta(days=days).total_seconds()
    kinds = [KindStats(**row._mapping) for row in db.execute(_BY_KIND, {"window_s": window, **prefixes, **kinds_of})]
    totals = db.execute(_TOTALS, {"stuck_s": stuck_after.total_seconds(), "open": [str(s) for s in OPEN_STATUSES],
                                  "legacy": prefixes["legacy"], "failed": str(Outcome.FAILED)}).one()
    return LockReport(days, kinds, totals.stuck, totals.failed, totals.last_legacy)


def purchases_by_status(conn: Connection) -> dict[PurchaseStatus, int]:
    counts = dict(conn.execute(_BY_STATUS).all())
    return {status: counts.get(str(status), 0) for status in PurchaseStatus}


@dataclass(frozen=True)
class Backlog:
    undelivered: int
    oldest_undelivered_age_s: float
    dead: int
    failed_attempts: int


def notification_backlog(conn: Connection) -> Backlog:
    undelivered, oldest, dead, failures = conn.execute(_BACKLOG).one()
    return Backlog(undelivered, float(oldest), dead, int(failures))
