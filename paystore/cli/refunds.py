"""`paystore refunds create`: refund a purchase from the shop's side, as support does."""

from __future__ import annotations

import uuid

import click

from paystore.cli import with_paystore
from paystore.extension import Paystore
from paystore.services.purchasing import refunds as shop_refunds

refunds = click.Group("refunds", help="Refunds the shop starts.")


@refunds.command("create")
@click.argument("purchase_id")
@click.option("--amount", type=click.IntRange(min=1), help="In minor units (default: all that is left).")
@click.option("--reason", type=click.Choice(shop_refunds.REASONS), help="Stripe's reason for the refund.")
@click.option("--idempotency-key", help="Run again with the same key to be sure of one refund (default: a new one).")
@with_paystore
def create_refund(ext: Paystore, purchase_id: str, amount: int | None, reason: str | None, idempotency_key: str | None) -> None:
    """Refund PURCHASE_ID at Stripe (nothing is refunded twice for one key)."""
    key = idempotency_key or f"cli-{uuid.uuid4()}"
    with ext.session_factory() as db:
        try:
            answer = shop_refunds.refund(db, ext.gateway, ext.settings, purchase_id, amount, reason, key)
        except Exception as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    refund, purchase = answer.refund, answer.purchase
    click.echo(f"refund {refund.id}: {refund.amount} {purchase.currency} {refund.status} (idempotency key {key})")
    click.echo(f"purchase {purchase.id}: {purchase.status}, refunded {purchase.refunded_amount}")
