"""The rules of the house that a later change could quietly break: SQL stays in the store (ruff's
banned-api rule), every package ships in the wheel, and the store's purchase columns are the
table's."""

from __future__ import annotations

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
])
def test_sql_outside_the_store_is_refused(line: str) -> None:
    """Negative control of the rule above: the same line is refused in a service, allowed in the store."""
    def check(path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*RUFF, "--select", "TID251", "--stdin-filename", path, "-"], cwd=ROOT, input=line + "\n",
                              capture_output=True, text=True, timeout=120)

    refused = check("paystore/services/purchasing/new_flow.py")
    assert refused.returncode == 1 and "TID251" in refused.stdout, refused.stdout + refused.stderr
    assert check("paystore/store/new_table.py").returncode == 0


def test_every_package_of_the_tree_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "paystore").rglob("__init__.py")}
    # migrations/ ships as paystore.migrations (pyproject.toml's package-dir)
    tree |= {".".join(("paystore", *p.parent.relative_to(ROOT).parts)) for p in (ROOT / "migrations").rglob("__init__.py")}
    assert listed == tree


def test_the_store_reads_and_writes_every_column_of_the_purchases_table() -> None:
    assert set(purchases.COLUMNS) == {column.key for column in PurchaseRow.__table__.columns}
    assert purchases.COLUMNS == Purchase.__slots__
