"""Debian's PgBouncer in transaction pooling mode in front of a PostgreSQL URL (tests, bench/).

    with pgbouncer(upstream_url, pool_size=4) as pooled_url:
        ...  # DATABASE_URL=pooled_url

Every database of the upstream server is reachable under its own name (`* =` entry). Clients log
in with SCRAM using the upstream's password (or, for a password-less upstream such as the
embedded server, a generated one the upstream then ignores); PgBouncer reuses it towards the
server. No startup parameter is ignored: a client that sends `options` is refused, as in
production. Independent of pytest.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL, make_url

from paystore.devtools.http import free_port
from paystore.devtools.processes import stop_process_group

UNPRIVILEGED_USER = "nobody"


class PgBouncerFailed(RuntimeError):
    """PgBouncer exited or did not answer; the message carries the tail of its log."""


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _server_address(upstream: URL) -> tuple[str, int]:
    """Host (or Unix socket directory, e.g. the embedded server's) and port of the upstream."""
    host = upstream.host or str(upstream.query.get("host") or "127.0.0.1")
    if upstream.port:
        port = upstream.port
    else:  # a socket-only URL names no port; the socket's file name still depends on it
        with psycopg.connect(libpq_url(upstream), autocommit=True) as conn:
            port = int(conn.execute("SHOW port").fetchone()[0])  # type: ignore[index]
    # PgBouncer may resolve "localhost" to ::1 first, where a published container port may not be.
    return ("127.0.0.1" if host == "localhost" else host), port


def _ini(
    user: str, server_host: str, server_port: int, port: int, auth_file: Path, pool_size: int, max_client_conn: int,
    socket_dir: Path | None,
) -> str:
    return f"""\
[databases]
* = host={server_host} port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {socket_dir or ""}
auth_type = scram-sha-256
auth_file = {auth_file}
admin_users = {user}
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = {max_client_conn}
; Used only by session pooling; in transaction mode nothing may outlive a transaction.
server_reset_query = DISCARD ALL
server_reset_query_always = 0
ignore_startup_parameters =
; A failed server login is retried after 1 s, not 15 s: tests wait for it.
server_login_retry = 1
log_connections = 0
log_disconnections = 0
"""


def _pooled_url(upstream: URL, port: int, password: str, socket_dir: Path | None) -> URL:
    query = {k: v for k, v in upstream.query.items() if k != "host"}
    if socket_dir is not None:  # libpq takes a directory as the host: the socket there
        return upstream.set(host=None, port=port, password=password, query={**query, "host": str(socket_dir)})
    return upstream.set(host="127.0.0.1", port=port, password=password, query=query)


def _answers(url: URL) -> bool:
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def libpq_url(url: URL | str) -> str:
    """The URL as a libpq conninfo string for psycopg.connect() (SQLAlchemy's rendering leaves
    characters such as spaces unescaped, which libpq refuses)."""
    parsed = make_url(url)
    params = {key: value for key, value in parsed.query.items() if isinstance(value, str)}
    given = {"host": parsed.host, "port": parsed.port, "user": parsed.username, "password": parsed.password,
             "dbname": parsed.database}
    params.update({key: value for key, value in given.items() if value not in (None, "")})
    return make_conninfo(**params)


def _give_to(user: str, *paths: Path) -> None:
    entry = pwd.getpwnam(user)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run_as(server_host: str) -> str | None:
    """PgBouncer refuses to run as root: started by root it drops to another user (`-u`). For an
    upstream on a Unix socket (the embedded server) that is the socket directory's owner, the
    only user sure to reach it; otherwise `nobody`."""
    if os.geteuid() != 0:
        return None
    if server_host.startswith("/"):
        owner = pwd.getpwuid(os.stat(server_host).st_uid).pw_name
        if owner != "root":
            return owner
    return UNPRIVILEGED_USER


@contextmanager
def pgbouncer(
    upstream_url: str, *, pool_size: int = 4, max_client_conn: int = 500, start_timeout_s: float = 30.0,
    unix_socket: bool = False,
) -> Iterator[str]:
    """Run PgBouncer (transaction pooling, `pool_size` server connections per database and user)
    in front of `upstream_url`, on a free 127.0.0.1 port; yield the pooled URL, then stop it.

    With `unix_socket`, PgBouncer also listens on a Unix socket and the URL names that, as on a
    host where the apps reach a local PgBouncer (and as the bench compares it with a server that
    is itself reached through a socket)."""
    exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    upstream = make_url(upstream_url)
    if not upstream.username:
        raise ValueError("the upstream URL must name a user: PgBouncer logs in as the client's user")
    server_host, server_port = _server_address(upstream)
    run_as = _run_as(server_host)
    password = upstream.password or secrets.token_urlsafe(16)
    workdir = Path(tempfile.mkdtemp(prefix="paystore-pgbouncer-"))
    auth_file, ini, log_path = workdir / "userlist.txt", workdir / "pgbouncer.ini", workdir / "pgbouncer.log"
    auth_file.write_text(f"{_quote(upstream.username)} {_quote(str(password))}\n")
    auth_file.chmod(0o600)
    proc: subprocess.Popen[bytes] | None = None
    socket_dir = workdir if unix_socket else None
    try:
        for _attempt in range(3):  # another process may take the free port before PgBouncer binds it
            port = free_port()
            ini.write_text(_ini(upstream.username, server_host, server_port, port, auth_file, pool_size, max_client_conn,
                                socket_dir))
            if run_as:
                _give_to(run_as, workdir, auth_file, ini)
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [exe, *(["-u", run_as] if run_as else []), str(ini)], stdout=log, stderr=log, start_new_session=True
                )
            url = _pooled_url(upstream, port, str(password), socket_dir)
            if _wait_until_it_answers(proc, url, start_timeout_s):
                break
            if proc.poll() is None:  # running but unable to reach the upstream: retrying will not help
                break
            proc = None
        if proc is None or not _answers(url):
            raise PgBouncerFailed(f"PgBouncer did not start or cannot reach {server_host}:{server_port}:\n"
                                  + log_path.read_text()[-3000:])
        yield url.render_as_string(hide_password=False)
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_it_answers(proc: subprocess.Popen[bytes], url: URL, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if _answers(url):
            return True
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT would wait for clients to leave (safe shutdown); SIGTERM closes everything now."""
    stop_process_group(proc, grace_s=10)


def admin_console(pooled_url: str, command: str) -> list[dict[str, Any]]:
    """Run a PgBouncer console command (`SHOW POOLS`, `SHOW SERVERS`, ...) and return its rows.

    The console speaks only the simple query protocol: psycopg's ClientCursor uses it."""
    url = make_url(pooled_url).set(database="pgbouncer")
    with psycopg.connect(libpq_url(url), autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        cursor = conn.execute(command)
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
