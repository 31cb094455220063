"""Each process's share of the server's connections, read from the server at start, and the
checkout slots it leaves once the webhooks' headroom is kept."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from paystore.config import Settings, webhook_headroom
from paystore.factory import UNKNOWN_LIMIT_CONNECTIONS, connection_budget
from tests.support.database import count


def _server_allows(engine: Engine) -> int:
    return count(engine, "SELECT current_setting('max_connections')::int"
                         " - current_setting('superuser_reserved_connections')::int"
                         " - coalesce(current_setting('reserved_connections', true)::int, 0)")


@pytest.mark.no_db
def test_a_process_takes_its_share_of_what_the_server_allows(database_url: str, engine: Engine) -> None:
    settings = Settings(db_processes=3, db_reserved=7, threads=1000)

    assert connection_budget(database_url, settings) == (_server_allows(engine) - 7) // 3


@pytest.mark.no_db
def test_the_share_is_at_most_a_connection_a_thread_and_an_explicit_setting_wins(database_url: str) -> None:
    assert connection_budget(database_url, Settings(threads=6)) == 6
    assert connection_budget(database_url, Settings(threads=128, db_connections=20)) == 20


@pytest.mark.no_db
def test_a_crowded_server_still_gives_each_process_two(database_url: str) -> None:
    assert connection_budget(database_url, Settings(db_processes=10_000, threads=128)) == 2


@pytest.mark.no_db
def test_a_database_down_at_start_gives_a_small_share_and_the_process_starts() -> None:
    gone = "postgresql://nobody@127.0.0.1:9/gone"

    assert connection_budget(gone, Settings(threads=128)) == UNKNOWN_LIMIT_CONNECTIONS


@pytest.mark.parametrize(("connections", "slots"), [(2, 1), (4, 2), (16, 14), (93, 82), (200, 175)])
def test_checkouts_get_the_connections_less_the_webhooks_headroom(connections: int, slots: int) -> None:
    assert Settings().checkout_limit(connections) == slots
    assert webhook_headroom(connections) >= 2
    assert Settings(checkout_slots=5).checkout_limit(connections) == 5  # set explicitly, it is what it says
