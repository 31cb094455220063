"""`paystore programs add|list`: the programs on sale."""

from __future__ import annotations

import click

from paystore.api.purchases import PROGRAM_ID
from paystore.cli import echo_table, with_paystore
from paystore.extension import Paystore
from paystore.services.purchasing import purchases
from paystore.services.purchasing.errors import ProgramExists
from paystore.stripe.fields import CURRENCY

programs = click.Group("programs", help="Manage the programs on sale.")


@programs.command("add")
@click.argument("program_id")
@click.option("--name", required=True, help="Name shown on the Stripe checkout page.")
@click.option("--amount", required=True, type=click.IntRange(min=1), help="Price in minor units (cents).")
@click.option("--currency", required=True, help="ISO 4217 code, e.g. usd.")
@with_paystore
def add_program(ext: Paystore, program_id: str, name: str, amount: int, currency: str) -> None:
    """Put a program on sale."""
    if not PROGRAM_ID.fullmatch(program_id):
        raise click.BadParameter("letters, digits, _ and - only (at most 64)", param_hint="PROGRAM_ID")
    if not CURRENCY.fullmatch(currency):
        raise click.BadParameter("a three-letter ISO 4217 code", param_hint="--currency")
    with ext.session_factory() as db:
        try:
            program = purchases.add_program(db, program_id, name, amount, currency)
        except ProgramExists as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"added {program.id}: {program.name}, {program.amount} {program.currency}")


@programs.command("list")
@with_paystore
def list_programs(ext: Paystore) -> None:
    """Show the programs on sale."""
    with ext.session_factory() as db:
        rows = purchases.list_programs(db)
    echo_table(["ID", "AMOUNT", "CUR", "NAME"], [[p.id, p.amount, p.currency, p.name] for p in rows])
