"""Pure rules, tested alone: no database, no server, no Stripe stand-in."""

import pytest


@pytest.fixture(autouse=True)
def clean_db() -> None:
    """Overrides the suite's per-test database clean-up: nothing here touches a database."""
