"""`paystore reconcile` and `paystore report locks`."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta

import click

from paystore.cli import echo_table, with_paystore
from paystore.extension import Paystore
from paystore.services.purchasing.reconcile import reconcile as reconcile_purchases
from paystore.services.reports import lock_report

EXIT_REPAIRED = 3
EXIT_ERRORS = 1
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = re.fullmatch(r"(\d+)([smhd])", str(value).strip())
        if not match:
            self.fail(f"{value!r} is not a duration such as 90s, 15m, 2h or 7d", param, ctx)
        return timedelta(**{_UNITS[match[2]]: int(match[1])})


@click.command("reconcile")
@click.option("--older-than", type=Duration(), default="15m", show_default=True,
              help="Only purchases pending or awaiting payment for longer than this.")
@click.option("--dry-run", is_flag=True, help="Ask Stripe and show what would change; change nothing.")
@with_paystore
def reconcile(ext: Paystore, older_than: timedelta, dry_run: bool) -> None:
    """Apply Stripe's view of old open purchases (for a lost webhook).

    Exit status: 0 nothing to repair, 3 something was repaired (or would be, with --dry-run),
    1 Stripe or the lock failed for some purchase (the others were still handled), or
    STRIPE_SECRET_KEY is unset.
    """
    if not ext.settings.stripe_secret_key:
        raise click.ClickException("STRIPE_SECRET_KEY is unset: reconcile must ask Stripe about each purchase; set it and retry")
    with ext.session_factory() as db:
        rows = reconcile_purchases(db, ext.gateway, ext.settings, older_than, dry_run=dry_run)
    echo_table(
        ["PURCHASE", "BEFORE", "STRIPE", "ACTION", "AFTER", "CHARGED"],
        [[r.purchase_id, r.status_before, r.stripe_says, r.action, r.status_after, r.charged] for r in rows],
    )
    repaired, failed = sum(r.repaired for r in rows), sum(r.failed for r in rows)
    verb = "would repair" if dry_run else "repaired"
    click.echo(f"{len(rows)} open purchases older than {older_than}: {verb} {repaired}, errors {failed}")
    if failed:
        sys.exit(EXIT_ERRORS)
    if repaired:
        sys.exit(EXIT_REPAIRED)


report = click.Group("report", help="Reports for operators.")


@report.command("locks")
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--stuck-after", type=Duration(), default="15m", show_default=True,
              help="Open purchases older than this count as stuck.")
@with_paystore
def locks_report(ext: Paystore, days: int, stuck_after: timedelta) -> None:
    """Webhooks by lock kind, lock wait percentiles, stuck purchases."""
    with ext.session_factory() as db:
        result = lock_report(db, days, stuck_after)

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    def when(value: datetime | None) -> str:
        return value.isoformat(timespec="seconds") if value else "never"

    click.echo(f"Webhook events in the last {days} days, by lock (waits in ms):")
    echo_table(
        ["LOCK", "EVENTS", "P50", "P95", "P99", "MAX", "LAST SEEN"],
        [[k.kind, k.events, ms(k.p50), ms(k.p95), ms(k.p99), ms(k.max), when(k.last_seen)] for k in result.kinds],
    )
    click.echo(f"uses of the legacy lock in the window: {result.legacy_events} (last ever: {when(result.last_legacy_use)})")
    click.echo(f"open purchases older than {stuck_after}: {result.stuck_open}")
    click.echo(f"events recorded as failed: {result.failed_events}")
