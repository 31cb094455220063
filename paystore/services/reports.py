"""Reports for operators (`paystore report locks`): the numbers the rollout plan asks for."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from paystore.store import reports
from paystore.store.reports import LockReport

__all__ = ["LockReport", "lock_report"]


def lock_report(db: Session, days: int, stuck_after: timedelta) -> LockReport:
    """Webhooks by lock kind with lock-wait percentiles, open purchases older than `stuck_after`,
    failed events, and the last use of the legacy lock."""
    with db.begin():
        return reports.lock_report(db, days, stuck_after)
