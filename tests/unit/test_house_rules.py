"""The rules of the house that a later change could quietly break: SQL stays in the store (ruff's
banned-api rule, and a look for the ways around it that an import rule cannot see), every package
and every file of a package ships in the wheel, and the store's purchase columns are the table's."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from paystore.domain.purchase import Purchase
from paystore.models import PurchaseRow
from paystore.store import purchases

ROOT = Path(__file__).resolve().parents[2]
RUFF = [sys.executable, "-m", "ruff", "check", "--no-cache"]


def test_ruff_finds_nothing_in_the_project() -> None:
    result = subprocess.run([*RUFF, "--output-format", "concise", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("line", [
    "from paystore.store import sql",
    "from paystore.store.sql import execute",
    "from sqlalchemy import select, text",
    "from sqlalchemy.dialects.postgresql import insert",
    "from sqlalchemy.sql import text",
    "from sqlalchemy.sql.expression import update",
    "from sqlalchemy.future import select",
    "from sqlalchemy import func",
    "from psycopg import connect",
])
def test_sql_outside_the_store_is_refused(line: str) -> None:
    """Negative control of the rule above: the same line is refused in a service, allowed in the store."""
    def check(path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*RUFF, "--select", "TID251", "--stdin-filename", path, "-"], cwd=ROOT, input=line + "\n",
                              capture_output=True, text=True, timeout=120)

    refused = check("paystore/services/purchasing/new_flow.py")
    assert refused.returncode == 1 and "TID251" in refused.stdout, refused.stdout + refused.stderr
    assert check("paystore/store/new_table.py").returncode == 0


# Statements sent around the store's executor, which no import rule sees: a Session's or
# Connection's driver-level call, or a DBAPI cursor.
AROUND_THE_STORE = re.compile(r"\.exec_driver_sql\(|\.cursor\(|\.driver_connection\b|\.dbapi_connection\b")
# Where SQL belongs, or is the point: the store, the schema and its migrations, and the dev tools
# that provision PostgreSQL and PgBouncer.
SQL_AT_HOME = ("paystore/store/", "paystore/devtools/", "paystore/db.py", "paystore/models.py")


def _product_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "paystore"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [path for path in listed.split() if path.endswith(".py") and not path.startswith(SQL_AT_HOME)]


def test_no_statement_goes_around_the_store() -> None:
    found = [f"{path}:{n}: {line.strip()}" for path in _product_files()
             for n, line in enumerate((ROOT / path).read_text().splitlines(), 1) if AROUND_THE_STORE.search(line)]
    assert found == []


def test_the_look_around_the_store_sees_a_driver_level_statement() -> None:
    """Negative control of the look above."""
    assert AROUND_THE_STORE.search('db.connection().exec_driver_sql("UPDATE purchases SET status = %s")')
    assert AROUND_THE_STORE.search("raw = engine.raw_connection(); raw.cursor()")


def test_every_package_of_the_tree_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "paystore").rglob("__init__.py")}
    # migrations/ ships as paystore.migrations (pyproject.toml's package-dir)
    tree |= {".".join(("paystore", *p.parent.relative_to(ROOT).parts)) for p in (ROOT / "migrations").rglob("__init__.py")}
    assert listed == tree


def test_the_store_reads_and_writes_every_column_of_the_purchases_table() -> None:
    assert set(purchases.COLUMNS) == {column.key for column in PurchaseRow.__table__.columns}
    assert purchases.COLUMNS == Purchase.__slots__


def _package_folders(setuptools: dict) -> dict[Path, str]:
    """Each listed package's folder in the tree (package-dir maps migrations/ to paystore.migrations)."""
    mapped = setuptools["package-dir"]
    folders = {}
    for package in setuptools["packages"]:
        parent = max((p for p in mapped if package == p or package.startswith(p + ".")), key=len, default=None)
        folder = Path(mapped[parent], *package[len(parent):].split(".")[1:]) if parent else Path(*package.split("."))
        folders[folder] = package
    return folders


def test_every_data_file_of_a_package_ships_in_the_wheel() -> None:
    """A file the code reads at run time (the stand-in's fixtures, openapi.json, Alembic's template)
    must be matched by package-data, or an installed wheel fails where a checkout works."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders, data = _package_folders(setuptools), setuptools["package-data"]
    tracked = subprocess.run(["git", "ls-files", "paystore", "migrations"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    left_out = []
    for path in (Path(p) for p in tracked if not p.endswith(".py")):
        folder = next(f for f in path.parents if f in folders)  # the nearest package holding the file
        patterns = data.get(folders[folder], [])
        if not any(fnmatch.fnmatch(path.relative_to(folder).as_posix(), pattern) for pattern in patterns):
            left_out.append(str(path))
    assert left_out == []


def test_the_buyer_reads_a_sentence_for_every_status() -> None:
    from paystore.api.buyer import SENTENCES
    from paystore.domain.purchase import PurchaseStatus

    assert set(SENTENCES) == set(PurchaseStatus)
