"""`paystore report locks`: the numbers the rollout plan asks for, from the event record.

Windows are exact durations in seconds, never calendar days: `timestamptz - interval '30 days'`
follows the session's TimeZone across daylight-saving changes, and paystore does not set one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from paystore.models import UtcDateTime

_BY_KIND = text(
    """
    SELECT CASE WHEN lock_key LIKE 'purchase:complete:%' THEN 'unified'
                WHEN lock_key LIKE 'webhook:session:%' THEN 'legacy'
                ELSE 'none' END AS kind,
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
             WHERE status IN ('pending', 'awaiting_payment')
               AND created_at < now() - make_interval(secs => :stuck_s)) AS stuck,
           (SELECT count(*) FROM stripe_events WHERE outcome = 'failed') AS failed,
           (SELECT max(received_at) FROM stripe_events WHERE lock_key LIKE 'webhook:session:%') AS last_legacy
    """
).columns(last_legacy=UtcDateTime)


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
        return sum(k.events for k in self.kinds if k.kind == "legacy")


def lock_report(db: Session, days: int, stuck_after: timedelta) -> LockReport:
    with db.begin():
        window = timedelta(days=days).total_seconds()
        kinds = [KindStats(**row._mapping) for row in db.execute(_BY_KIND, {"window_s": window})]
        totals = db.execute(_TOTALS, {"stuck_s": stuck_after.total_seconds()}).one()
    return LockReport(days, kinds, totals.stuck, totals.failed, totals.last_legacy)
