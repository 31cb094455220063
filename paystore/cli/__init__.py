"""`paystore ...` (console script) and `flask --app app ...`: the same Flask CLI group."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup
from sqlalchemy.orm import Session

from paystore.logs import configure_logging


def db_session() -> Session:
    return current_app.extensions["paystore"].session_factory()


def register(app: Flask) -> None:
    from paystore.cli import events, ops, programs

    for group in (programs.programs, events.events, ops.report):
        app.cli.add_command(group)
    app.cli.add_command(ops.reconcile)


def _create_app() -> Flask:
    from paystore import create_app

    configure_logging()
    return create_app()


main = FlaskGroup(create_app=_create_app, help="paystore management commands.")


def echo_table(headers: list[str], rows: list[list[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
