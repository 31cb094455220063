"""Alembic, driven from code: `paystore db upgrade`, the embedded default migrating itself, and
/readyz comparing heads.

The migration scripts ship inside the package as `paystore.migrations` (the repository's
top-level `migrations/`, mapped by pyproject.toml), so they are found the same way from a
checkout and from an installed wheel. `alembic upgrade head` from the repository root reads the
same location from pyproject.toml's [tool.alembic].
"""

from __future__ import annotations

import functools

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

# The package paystore.migrations itself (a resource path with nothing after the colon): in an
# editable install it is the top-level migrations/ folder, not a folder inside paystore/.
SCRIPT_LOCATION = "paystore.migrations:"


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str | None = None) -> None:
    """Migrate `database_url` (default: DATABASE_URL) to head, under the migration lock."""
    command.upgrade(alembic_config(database_url), "head")


@functools.cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
