"""`paystore notifications deliver|list|replay`: the shop's notifications (the outbox)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import uuid
from datetime import timedelta

import click
import requests

from paystore.cli import echo_table, with_paystore
from paystore.cli.ops import Duration
from paystore.extension import Paystore
from paystore.services.notifications import admin, delivery
from paystore.services.notifications.errors import NotConfigured
from paystore.store import DATABASE_UNAVAILABLE

log = logging.getLogger(__name__)
EXIT_FAILED = 1
EXIT_NOT_CONFIGURED = 2

notifications = click.Group("notifications", help="Notifications to the shop (PAYSTORE_NOTIFY_URL).")


def _one_pass(ext: Paystore, http: requests.Session, stop: threading.Event | None = None) -> delivery.DeliveryRun:
    with ext.session_factory() as db:
        return delivery.deliver_due(db, ext.settings.notify_url, ext.settings.notify_secrets, http=http, stop=stop)


def _summary(run: delivery.DeliveryRun) -> str:
    return f"delivered {run.delivered}, failed {run.failed} (retried later), dead {run.dead}"


@notifications.command("deliver")
@click.option("--forever", is_flag=True, help="Keep delivering until SIGTERM or SIGINT (for a service unit).")
@click.option("--interval", type=Duration(), default="2s", show_default=True,
              help="With --forever: how long to wait when nothing is due.")
@with_paystore
def deliver(ext: Paystore, forever: bool, interval: timedelta) -> None:
    """POST due notifications to PAYSTORE_NOTIFY_URL, signed with PAYSTORE_NOTIFY_SECRET.

    Exit status: 0 every due notification was delivered, 1 some failed (each is retried later
    with backoff), 2 PAYSTORE_NOTIFY_URL or PAYSTORE_NOTIFY_SECRET is unset.
    """
    http = requests.Session()
    try:
        if not forever:
            run = _one_pass(ext, http)
            click.echo(_summary(run))
            sys.exit(EXIT_FAILED if run.failed else 0)
        _deliver_forever(ext, http, interval)
    except NotConfigured as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_NOT_CONFIGURED)
    except DATABASE_UNAVAILABLE as exc:
        click.echo(f"Error: the database is unavailable ({_driver_error(exc)})", err=True)
        sys.exit(EXIT_FAILED)


def _driver_error(exc: BaseException) -> str:
    return type(getattr(exc, "orig", None) or exc).__name__


def _deliver_forever(ext: Paystore, http: requests.Session, interval: timedelta) -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Finish the POST in flight and record its answer, then exit: nothing is left leased.
        signal.signal(signum, lambda *_: stop.set())
    total = delivery.DeliveryRun()
    log.info("Delivering notifications until stopped")
    while not stop.is_set():
        try:
            run = _one_pass(ext, http, stop)
        except DATABASE_UNAVAILABLE as exc:
            log.error("Notification delivery paused: database unavailable (%s)", _driver_error(exc))
            stop.wait(interval.total_seconds())
            continue
        total.delivered += run.delivered
        total.failed += run.failed
        total.dead += run.dead
        if not run.tried:
            stop.wait(interval.total_seconds())
    click.echo(f"stopped: {_summary(total)}")


@notifications.command("list")
@click.option("--state", "which", type=click.Choice(admin.FILTERS), default="undelivered", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@with_paystore
def list_notifications(ext: Paystore, which: str, limit: int) -> None:
    """Show notifications, newest first."""
    with ext.session_factory() as db:
        rows = admin.list_notifications(db, which, limit)

    def state(n: object) -> str:
        return "delivered" if n.delivered_at else "dead" if n.dead_at else "waiting"  # type: ignore[attr-defined]

    echo_table(
        ["NOTIFICATION", "TYPE", "PURCHASE", "CREATED", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"],
        [
            [n.id, n.type, n.purchase_id, n.created_at.isoformat(timespec="seconds"), state(n), n.attempts,
             "-" if n.delivered_at or n.dead_at else n.next_attempt_at.isoformat(timespec="seconds"), n.last_error or "-"]
            for n in rows
        ],
    )


@notifications.command("replay")
@click.argument("notification_id", required=False)
@click.option("--dead", "all_dead", is_flag=True, help="Queue every dead notification again.")
@with_paystore
def replay(ext: Paystore, notification_id: str | None, all_dead: bool) -> None:
    """Send notifications again, now, with a fresh 3-day retry window (same id)."""
    if bool(notification_id) == all_dead:
        raise click.UsageError("give either a NOTIFICATION_ID or --dead")
    ids = None
    if notification_id:
        try:
            ids = [uuid.UUID(notification_id)]
        except ValueError:
            raise click.BadParameter("not a notification id (a UUID)", param_hint="NOTIFICATION_ID") from None
    with ext.session_factory() as db:
        queued = admin.replay(db, ids)
    if ids and not queued:
        raise click.ClickException(f"no notification {notification_id}")
    click.echo(f"queued {queued} notification(s); the next deliver run sends them")
