"""`paystore db upgrade`: migrate the database, from wherever paystore is installed."""

from __future__ import annotations

import os

import click

from paystore import migrate

db = click.Group("db", help="The database schema (Alembic migrations shipped with paystore).")


@db.command("upgrade")
def upgrade() -> None:
    """Migrate DATABASE_URL to the newest schema (the same as `alembic upgrade head`)."""
    if not os.environ.get("DATABASE_URL"):
        raise click.ClickException("DATABASE_URL is not set: tell paystore which database to migrate")
    migrate.upgrade_to_head()
    click.echo(f"database at {migrate.head_revision()}")
