"""PostgreSQL servers the test makes itself, from Debian's binaries: for what one testcontainers
server cannot show (a primary and its streaming replica, a server on an address another network
namespace reaches). Run as the `postgres` user when the test runs as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from paystore.devtools.http import free_port


def _newest_debian_bin() -> Path:
    """Debian's newest installed server (bookworm ships 15, trixie 17), 15's path if none."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = Path(os.environ["PAYSTORE_PG_BIN"]) if os.environ.get("PAYSTORE_PG_BIN") else _newest_debian_bin()


def available() -> str | None:
    """Why servers cannot be made here, or None."""
    if not (PG_BIN / "postgres").exists():
        return f"no PostgreSQL server binaries in {PG_BIN} (Debian package postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as the postgres user"
    return None


def _as_postgres(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, check=True, **kwargs)  # type: ignore[call-overload]


@dataclass
class PgServer:
    data_dir: Path
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def start(self, *settings: str) -> PgServer:
        options = " ".join(f"-c {s}" for s in (f"listen_addresses={self.host}", f"port={self.port}",
                                                 f"unix_socket_directories={self.data_dir}", *settings))
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-o", options, "-l",
                      str(self.data_dir / "server.log"), "-w", "-t", "60", "start"])
        return self

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: no shutdown checkpoint, nothing flushed that was not."""
        subprocess.run(["runuser", "-u", "postgres", "--"] * (os.geteuid() == 0)
                       + [str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
                       capture_output=True, timeout=120)

    def promote(self) -> None:
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-w", "promote"])

    def sql(self, statement: str) -> str:
        return _as_postgres([str(PG_BIN.parent / "bin" / "psql"), "-h", str(self.data_dir), "-p", str(self.port),
                             "-U", "postgres", "-At", "-c", statement]).stdout.strip()

    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text()[-4000:] if path.exists() else ""


@contextmanager
def scratch() -> Iterator[Path]:
    """A directory the postgres user may use, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="paystore-pg-"))
    path.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def primary(root: Path, host: str = "127.0.0.1", *settings: str) -> PgServer:
    """A new cluster (trust authentication, replication allowed), started."""
    data = root / "primary"
    _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"])
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write("host all all 0.0.0.0/0 trust\nhost replication all 0.0.0.0/0 trust\n")
    return PgServer(data, host, free_port()).start("wal_level=replica", "max_wal_senders=5", "fsync=off", *settings)


def replica_of(source: PgServer, root: Path, name: str = "replica") -> PgServer:
    """A streaming replica of `source` (pg_basebackup -R), started; its name is its application_name."""
    data = root / name
    _as_postgres([str(PG_BIN / "pg_basebackup"), "-h", source.host, "-p", str(source.port), "-U", "postgres",
                  "-D", str(data), "-R", "-X", "stream", "--no-sync"])
    with open(data / "postgresql.auto.conf", "a") as auto:
        auto.write(f"primary_conninfo = 'host={source.host} port={source.port} user=postgres application_name={name}'\n")
    server = PgServer(data, source.host, free_port()).start("hot_standby=on", "fsync=off")
    deadline = time.monotonic() + 60
    while source.sql(f"SELECT count(*) FROM pg_stat_replication WHERE application_name = '{name}'") != "1":
        if time.monotonic() > deadline:
            log = server.log()
            server.stop("immediate")  # the caller never gets it to stop
            raise AssertionError(f"the replica never streamed:\n{log}")
        time.sleep(0.2)
    return server
