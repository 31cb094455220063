"""`flask --app app ...`: Flask finds `create_app` here, with paystore's commands added to the app."""

from flask import Flask

import paystore
from paystore.cli import commands


def create_app() -> Flask:
    app = paystore.create_app()
    for command in commands():
        app.cli.add_command(command)
    return app
