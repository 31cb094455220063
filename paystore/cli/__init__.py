"""`paystore ...`, the console script: paystore's own commands for operators.

A plain click group, not Flask's: Flask's generic `run`, `shell`, `routes` and `--app` are for
Flask developers. The app (and with it the embedded database, when DATABASE_URL is unset) is
built only when a command runs, not for `--help`, and the app itself never imports this package.
`flask --app app ...` offers the same commands (app.py adds them to the app it builds). Log
lines below WARNING, the embedded-database notice included, show only with -v.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import has_app_context

from paystore.extension import Paystore, current_paystore
from paystore.logs import configure_logging, logging_config

T = TypeVar("T")
_APP = "paystore.app"


def with_paystore(command: Callable[..., T]) -> Callable[..., T]:
    """Pass the app's extension as the command's first argument, building the app once per run."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> T:
        if has_app_context():  # `flask --app app ...`: Flask built the app already
            return command(current_paystore(), *args, **kwargs)
        meta = click.get_current_context().meta
        if _APP not in meta:
            from paystore import create_app

            configure_logging()
            meta[_APP] = create_app()
        return command(Paystore.of(meta[_APP]), *args, **kwargs)

    return run


def _configure_cli_logging(verbose: int) -> None:
    if logging.getLogger().handlers:
        return  # a host application configured logging already
    asked = {0: None, 1: "INFO"}.get(verbose, "DEBUG") or os.environ.get("PAYSTORE_LOG_LEVEL") or None
    logging.config.dictConfig(logging_config(asked or "WARNING"))
    if asked is None:
        # The embedded default announces itself at WARNING for servers; a command's output
        # should be its answer.
        logging.getLogger("paystore.embedded").setLevel(logging.ERROR)


def echo_table(headers: list[str], rows: list[list[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def commands() -> list[click.Command]:
    from paystore.cli import db, events, notifications, ops, programs, refunds

    return [db.db, programs.programs, refunds.refunds, events.events, notifications.notifications, ops.report,
            ops.reconcile]


@click.group(help="paystore management commands.")
@click.option("-v", "--verbose", count=True, help="Show INFO log lines (start-up, migrations); -vv for DEBUG.")
def main(verbose: int) -> None:
    _configure_cli_logging(verbose)


for _command in commands():
    main.add_command(_command)
