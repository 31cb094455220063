"""`paystore programs add|list`: the programs on sale."""

from __future__ import annotations

import click

from paystore.api.purchases import PROGRAM_ID
from paystore.cli import echo_table, with_paystore
from paystore.config import TAX_BEHAVIORS
from paystore.domain.program import Program
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
@click.option("--promotion-codes/--no-promotion-codes", "allow_promotion_codes", default=None,
              help="Let buyers enter a promotion code (default: PAYSTORE_ALLOW_PROMOTION_CODES).")
@click.option("--automatic-tax/--no-automatic-tax", "automatic_tax", default=None,
              help="Stripe Tax computes the tax (default: PAYSTORE_AUTOMATIC_TAX).")
@click.option("--tax-behavior", type=click.Choice(TAX_BEHAVIORS), default=None,
              help="With automatic tax: the price excludes tax (added at checkout) or includes it "
                   "(default: PAYSTORE_TAX_BEHAVIOR).")
@click.option("--tax-code", default=None, help="Stripe's product tax code, e.g. txcd_10000000 (default: PAYSTORE_TAX_CODE).")
@with_paystore
def add_program(ext: Paystore, program_id: str, name: str, amount: int, currency: str, allow_promotion_codes: bool | None,
                automatic_tax: bool | None, tax_behavior: str | None, tax_code: str | None) -> None:
    """Put a program on sale."""
    if not PROGRAM_ID.fullmatch(program_id):
        raise click.BadParameter("letters, digits, _ and - only (at most 64)", param_hint="PROGRAM_ID")
    if not CURRENCY.fullmatch(currency):
        raise click.BadParameter("a three-letter ISO 4217 code", param_hint="--currency")
    with ext.session_factory() as db:
        try:
            program = purchases.add_program(db, Program(
                id=program_id, name=name, amount=amount, currency=currency.lower(),
                allow_promotion_codes=allow_promotion_codes, automatic_tax=automatic_tax, tax_behavior=tax_behavior,
                tax_code=tax_code))
        except ProgramExists as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"added {program.id}: {program.name}, {program.amount} {program.currency}")


@programs.command("list")
@with_paystore
def list_programs(ext: Paystore) -> None:
    """Show the programs on sale."""
    with ext.session_factory() as db:
        rows = purchases.list_programs(db)
    def setting(value: object) -> str:
        return "default" if value is None else str(value).lower()

    echo_table(["ID", "AMOUNT", "CUR", "PROMOTION CODES", "AUTOMATIC TAX", "TAX BEHAVIOR", "TAX CODE", "NAME"],
               [[p.id, p.amount, p.currency, setting(p.allow_promotion_codes), setting(p.automatic_tax),
                 setting(p.tax_behavior), setting(p.tax_code), p.name] for p in rows])
