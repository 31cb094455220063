"""`paystore ...` (console script) and `flask --app app ...`: the same commands.

`paystore` is a plain click group of paystore's own commands: Flask's generic `run`, `shell`,
`routes` and `--app` are for Flask developers, not for operators. The app (and with it the
embedded database, when DATABASE_URL is unset) is created only when a command runs, not for
`--help`. Log lines below WARNING, the embedded-database notice included, show only with -v.
"""

from __future__ import annotations

import logging
import logging.config
import os
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import ScriptInfo
from sqlalchemy.orm import Session

from paystore.logs import configure_logging, logging_config


def db_session() -> Session:
    return current_app.extensions["paystore"].session_factory()


def _commands() -> list[click.Command]:
    from paystore.cli import events, notifications, ops, programs

    return [programs.programs, events.events, notifications.notifications, ops.report, ops.reconcile]


def register(app: Flask) -> None:
    for command in _commands():
        app.cli.add_command(command)


def _create_app() -> Flask:
    from paystore import create_app

    configure_logging()
    return create_app()


def _configure_cli_logging(verbose: int) -> None:
    if logging.getLogger().handlers:
        return  # a host application configured logging already
    asked = {0: None, 1: "INFO"}.get(verbose, "DEBUG") or os.environ.get("PAYSTORE_LOG_LEVEL") or None
    logging.config.dictConfig(logging_config(asked or "WARNING"))
    if asked is None:
        # The embedded default announces itself at WARNING for servers; a command's output
        # should be its answer.
        logging.getLogger("paystore.embedded").setLevel(logging.ERROR)


class PaystoreGroup(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Commands use flask.cli.with_appcontext, which builds the app from this ScriptInfo.
        kwargs.setdefault("obj", ScriptInfo(create_app=_create_app, set_debug_flag=False))
        return super().main(*args, **kwargs)


@click.group(cls=PaystoreGroup, help="paystore management commands.")
@click.option("-v", "--verbose", count=True, help="Show INFO log lines (start-up, migrations); -vv for DEBUG.")
def main(verbose: int) -> None:
    _configure_cli_logging(verbose)


def echo_table(headers: list[str], rows: list[list[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


for _command in _commands():
    main.add_command(_command)
