"""`paystore ...` (console script) and `flask --app app ...`: the same Flask CLI group."""

from __future__ import annotations

import re

import click
from flask import Flask, current_app
from flask.cli import AppGroup, FlaskGroup

from paystore.services import purchases

programs = AppGroup("programs", help="Manage the programs on sale.")


def _db():  # type: ignore[no-untyped-def]
    return current_app.extensions["paystore"].session_factory()


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
    with _db() as db:
        try:
            program = purchases.add_program(db, program_id, name, amount, currency)
        except purchases.ProgramExists as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"added {program.id}: {program.name}, {program.amount} {program.currency}")


@programs.command("list")
def list_programs() -> None:
    """Show the programs on sale."""
    with _db() as db:
        rows = purchases.list_programs(db)
    click.echo(f"{'ID':<24} {'AMOUNT':>10} {'CUR':<4} NAME")
    for p in rows:
        click.echo(f"{p.id:<24} {p.amount:>10} {p.currency:<4} {p.name}")


def register(app: Flask) -> None:
    app.cli.add_command(programs)


def _create_app() -> Flask:
    from paystore import create_app

    return create_app()


main = FlaskGroup(create_app=_create_app, help="paystore management commands.")
