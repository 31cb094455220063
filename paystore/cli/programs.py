"""`paystore programs add|list`: the programs on sale."""

from __future__ import annotations

import re

import click
from flask.cli import AppGroup

from paystore.cli import db_session, echo_table
from paystore.services import purchases

programs = AppGroup("programs", help="Manage the programs on sale.")


@programs.command("add")
@click.argument("program_id")
@click.option("--name", required=True, help="Name shown on the Stripe checkout page.")
@click.option("--amount", required=True, type=click.IntRange(min=1), help="Price in minor units (cents).")
@click.option("--currency", required=True, help="ISO 4217 code, e.g. usd.")
def add_program(program_id: str, name: str, amount: int, currency: str) -> None:
    """Put a program on sale."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", program_id):
        raise click.BadParameter("letters, digits, _ and - only (at most 64)", param_hint="PROGRAM_ID")
    if not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise click.BadParameter("a three-letter ISO 4217 code", param_hint="--currency")
    with db_session() as db:
        try:
            program = purchases.add_program(db, program_id, name, amount, currency)
        except purchases.ProgramExists as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"added {program.id}: {program.name}, {program.amount} {program.currency}")


@programs.command("list")
def list_programs() -> None:
    """Show the programs on sale."""
    with db_session() as db:
        rows = purchases.list_programs(db)
    echo_table(["ID", "AMOUNT", "CUR", "NAME"], [[p.id, p.amount, p.currency, p.name] for p in rows])
