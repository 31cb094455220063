"""`paystore events list|replay`: the Stripe event record, and re-running what failed."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import click

from paystore.cli import echo_table, with_paystore
from paystore.cli.ops import Duration
from paystore.domain.outcome import Outcome
from paystore.extension import Paystore
from paystore.services.stripe_events import history
from paystore.services.stripe_events import sync as stripe_sync
from paystore.stripe.errors import StripeUnavailable

events = click.Group("events", help="Recorded Stripe events.")


def _shorten(text: str, width: int = 80) -> str:
    """Cut a long error between words, never inside an id: a cut id would name the wrong thing."""
    if len(text) <= width:
        return text
    cut = text.rfind(" ", 0, width - 3)
    return (text[:cut] if cut > 0 else text.split(" ", 1)[0]) + " ..."


@events.command("list")
@click.option("--outcome", type=click.Choice([str(o) for o in Outcome]), help="Only events of this outcome.")
@click.option("--since", type=Duration(), help="Only events received within this window, e.g. 24h.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@with_paystore
def list_events(ext: Paystore, outcome: str | None, since: timedelta | None, limit: int) -> None:
    """Show recorded events, newest first."""
    cutoff = datetime.now(UTC) - since if since else None
    with ext.session_factory() as db:
        found = history.recorded_events(db, outcome=Outcome(outcome) if outcome else None, since=cutoff, limit=limit)
    echo_table(
        ["EVENT", "TYPE", "RECEIVED", "OUTCOME", "ATTEMPTS", "PURCHASE", "LOCK WAIT MS", "ERROR"],
        [
            [e.stripe_event_id, e.type, e.received_at.isoformat(timespec="seconds"), e.outcome or "-", e.attempts,
             e.purchase_id or "-", "-" if e.lock_wait_ms is None else f"{e.lock_wait_ms:.1f}", _shorten(e.error or "")]
            for e in found
        ],
    )


@events.command("replay")
@click.argument("event_id", required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Replay every event recorded as failed, oldest first.")
@with_paystore
def replay(ext: Paystore, event_id: str | None, all_failed: bool) -> None:
    """Run recorded events through the webhook handler again (idempotent)."""
    if bool(event_id) == all_failed:
        raise click.UsageError("give either an EVENT_ID or --failed")
    if all_failed:
        with ext.session_factory() as db:
            failed = history.recorded_events(db, outcome=Outcome.FAILED, limit=10_000)
        ids = [e.stripe_event_id for e in reversed(failed)]
    else:
        ids = [event_id]
    errors = 0
    for stripe_event_id in ids:
        try:
            # A fresh session per event: nothing read for one event can be stale for the next.
            with ext.session_factory() as db:
                result = history.replay(db, ext.gateway, ext.settings, stripe_event_id)
            click.echo(f"{stripe_event_id}: {result.outcome}")
        except Exception as exc:  # one bad event must not stop the others
            errors += 1
            click.echo(f"{stripe_event_id}: error: {type(exc).__name__}: {exc}", err=True)
    if errors:
        sys.exit(1)


@events.command("sync")
@click.option("--since", type=Duration(), default="72h", show_default=True,
              help="Events Stripe created within this window (it keeps 30 days).")
@click.option("--undelivered-only", is_flag=True, help="Only events Stripe could not deliver.")
@with_paystore
def sync(ext: Paystore, since: timedelta, undelivered_only: bool) -> None:
    """Run Stripe's events of the window through the webhook handler (safe at any time: an event
    already recorded is a duplicate). Exit status 1 if some event could not be applied."""
    if not ext.settings.stripe_secret_key:
        raise click.ClickException("STRIPE_SECRET_KEY is unset: events sync lists the events at Stripe; set it and retry")
    with ext.session_factory() as db:
        try:
            report = stripe_sync.sync(db, ext.gateway, ext.settings, since, undelivered_only=undelivered_only)
        except StripeUnavailable as exc:
            raise click.ClickException(f"Stripe: {exc}") from None
    if report.beyond_retention:
        click.echo(f"note: Stripe keeps {stripe_sync.STRIPE_KEEPS_EVENTS.days} days of events; older ones cannot be listed",
                   err=True)
    echo_table(["EVENT", "TYPE", "CREATED", "OUTCOME"],
               [[r.event_id, r.type, r.created.isoformat(timespec="seconds"), r.outcome] for r in report.rows])
    applied = [r for r in report.rows if r.applied]
    new = [r for r in applied if r.outcome != Outcome.DUPLICATE]
    click.echo(f"{len(report.rows)} events listed: {len(new)} applied now, {len(applied) - len(new)} already recorded, "
               f"{len(report.failed)} could not be applied")
    if report.failed:
        sys.exit(1)
