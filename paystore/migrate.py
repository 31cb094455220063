"""Alembic, driven from code: `paystore db upgrade`, the embedded default migrating itself, and
/readyz comparing heads.

The migration scripts ship inside the package as `paystore.migrations` (the repository's
top-level `migrations/`, mapped by pyproject.toml), where Alembic finds them as a package
resource in an installed wheel and in an editable install. A checkout that is run without being
installed (`gunicorn wsgi:app` from the repository root with only the dependencies installed)
has no such package: the scripts are then the checkout's own `migrations/` folder. `alembic
upgrade head` from the repository root reads that folder from pyproject.toml's [tool.alembic].
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

# The package paystore.migrations itself (a resource path with nothing after the colon): in an
# editable install it is the top-level migrations/ folder, not a folder inside paystore/.
PACKAGED_SCRIPTS = "paystore.migrations:"
CHECKOUT_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"


@functools.cache
def script_location() -> str:
    if importlib.util.find_spec("paystore.migrations") is not None:
        return PACKAGED_SCRIPTS
    if (CHECKOUT_SCRIPTS / "env.py").is_file():
        return str(CHECKOUT_SCRIPTS)
    raise RuntimeError(f"paystore's migration scripts are neither installed (paystore.migrations) nor at {CHECKOUT_SCRIPTS}")


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", script_location())
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
