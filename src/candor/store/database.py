"""The database under the store: engine, SQLite configuration, transactions, checkpoints.

SQLite by default, at ``<data_dir>/candor.db``, in WAL mode with ``synchronous=FULL``: a write
that returned has reached the disk, and a ``kill -9`` at any moment leaves either the whole
transaction or none of it. Writers take the write lock up front (``BEGIN IMMEDIATE``), so two
processes (a long ``candor index`` run and a server) queue instead of failing half-way.

Erasure. ``secure_delete`` is on, so SQLite zeroes the bytes of deleted rows and freed pages
instead of leaving them in free space. A deleted row's old bytes still sit in earlier frames of
the write-ahead log until a checkpoint copies the newest pages into the database file; so a
write transaction that deleted embeddings (:meth:`Database.mark_erasing`) is followed, once it
has committed, by a ``wal_checkpoint(TRUNCATE)`` that empties the log (:meth:`Database.checkpoint`
says what that guarantees). Ordinary writes (IndexFaces) do not checkpoint: SQLite's automatic
checkpoints suffice for them, and secure_delete costs nothing on an insert.

PostgreSQL (a ``postgresql://`` URL, driver psycopg 3; docs/postgres.md). Write transactions
are serialised in the database, as SQLite's ``BEGIN IMMEDIATE`` serialises them in a file: each
takes one transaction-scoped advisory lock first, so the read-then-write steps the store does
(a generation bump, the ledger's head) behave the same with any number of candor nodes, and the
audit chain never forks. Reads run concurrently. A lost connection or a server restart is
reported as :class:`~candor.errors.ServiceUnavailable` (HTTP 503, retryable), and the pool
tests each connection before use (``pool_pre_ping``), so a node recovers by itself. WAL,
PRAGMAs and checkpoints are SQLite's: on PostgreSQL they are no-ops (a deleted row's bytes are
reclaimed by VACUUM; docs/postgres.md says what that means for erasure).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from candor.errors import ServiceUnavailable
from candor.store.migrations import migrate

log = logging.getLogger(__name__)

DB_NAME = "candor.db"

#: how long a statement, and a checkpoint, waits for another connection's lock (milliseconds)
BUSY_TIMEOUT_MS = 60_000

#: how long one checkpoint attempt waits for readers and writers to move on (milliseconds)
CHECKPOINT_WAIT_MS = 5_000

_ERASING = "candor_erasing"

#: the longest a search waits for the read replica to catch up before it reads the primary
REPLICA_WAIT_S = 0.2

#: the advisory lock every PostgreSQL write transaction takes (any constant; "candor" in ASCII)
WRITE_LOCK = 0x63616E646F72


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean the psycopg 3 driver (the one the postgres
    extra installs), not SQLAlchemy's default psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DB_NAME}"


def _use_wal(cur) -> None:
    """Switch a new database file to WAL (the mode is stored in the file: later connections
    only read it). Switching needs the file to itself and SQLite does not wait for that with
    the busy timeout, so two processes opening a fresh data dir at once retry here."""
    import sqlite3

    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cur.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def configure_sqlite(engine: Engine) -> None:
    """WAL + synchronous=FULL (durable commits), secure_delete (deleted bytes are zeroed),
    foreign keys, a generous busy timeout, and explicit BEGIN so that writers can take the lock
    up front (BEGIN IMMEDIATE)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _use_wal(cur)
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA secure_delete = ON")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        write = conn.get_execution_options().get("candor_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def configure_postgres(engine: Engine) -> None:
    """Serialise write transactions (an advisory lock, waited for up to the busy timeout) and
    turn connection-class failures into :class:`ServiceUnavailable`."""

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get("candor_write", False):
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {BUSY_TIMEOUT_MS}")
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")

    @event.listens_for(engine, "handle_error")
    def _on_error(context):
        failure = context.original_exception
        if context.is_pre_ping:  # the pool recognises a dead connection and reconnects
            return None
        # any driver's OperationalError (SQLAlchemy wraps it): connection, shutdown, lock
        # timeout, serialisation failure: all worth a retry
        if context.is_disconnect or isinstance(context.sqlalchemy_exception, OperationalError):
            return ServiceUnavailable(f"the database is unavailable ({type(failure).__name__}); "
                                      "retry the call")
        return None


def _shown(url: str) -> str:
    """``url`` as an error message may show it: without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - unparseable: show none of it (it may hold a password)
        return "(unparseable)"


def _engine(url: str, **kwargs) -> Engine:
    """``create_engine``, with a URL that cannot be parsed or whose driver is not installed
    as a typed error (the URL comes from ``--database``), never SQLAlchemy's own."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from candor.errors import InvalidParameter

    try:
        return create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise InvalidParameter(f"cannot use the database URL {_shown(url)}: {exc}; give a "
                               "SQLAlchemy URL such as postgresql://user@host/db or "
                               "sqlite:////path/candor.db") from None


class Database:
    """One SQL database, migrated to the latest schema, with read and write transactions."""

    def __init__(self, url: str, replica_url: str | None = None) -> None:
        self.url = url = normalise_url(url)
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _engine(url)
            configure_sqlite(self.engine)
        else:
            self.engine = _engine(url, pool_pre_ping=True, pool_size=8, max_overflow=24)
            if self.engine.dialect.name == "postgresql":
                configure_postgres(self.engine)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        #: a streaming replica for searches and listings (PostgreSQL only; docs/postgres.md)
        self.replica = None
        if replica_url:
            if not self.is_postgres:
                from candor.errors import InvalidParameter

                raise InvalidParameter("a read replica needs a PostgreSQL database")
            self.replica = _engine(normalise_url(replica_url), pool_pre_ping=True,
                                         pool_size=8, max_overflow=24,
                                         connect_args={"application_name": "candor-replica"})
            configure_postgres(self.replica)
        #: how long a replica read waits for the replica to replay the primary's writes
        self.replica_wait_s = REPLICA_WAIT_S
        #: reads the replica served, and reads that went to the primary instead (it lagged)
        self.replica_reads = self.replica_fallbacks = 0
        self.writer = self.engine.execution_options(candor_write=True)
        try:
            self.schema_version = migrate(self.writer)
        except OperationalError as exc:  # SQLite's file cannot be opened (PostgreSQL's: above)
            raise ServiceUnavailable(f"cannot open the database {_shown(url)}: {exc.orig}") from None
        #: how long a checkpoint after an erasure waits for other connections' transactions
        self.checkpoint_wait_ms = CHECKPOINT_WAIT_MS
        self._owed = False  # a checkpoint after an erasure could not complete yet
        #: shared commits of concurrent writers, when turned on (:meth:`group_commits`)
        self.group = None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed (durably) on normal exit, rolled back on error. If it
        deleted embeddings (:meth:`mark_erasing`), the WAL is checkpointed before this returns.
        With :meth:`group_commits` on, concurrent writes share one commit (still durable
        before this returns; the group checkpoints after its commit)."""
        if self.group is not None:
            with self.group.write() as conn:
                try:
                    yield conn
                finally:
                    self.group.erasing |= conn.info.pop(_ERASING, False)
            return
        with self.writer.connect() as conn:
            try:
                with conn.begin():
                    yield conn
            finally:
                erasing = conn.info.pop(_ERASING, False)
        if erasing or self._owed:
            self.checkpoint()

    def group_commits(self, wait: float) -> None:
        """Let concurrent writers share commits (:mod:`candor.store.group_commit`), waiting at
        most ``wait`` seconds for company: ``candor serve`` on SQLite."""
        if self.is_sqlite and self.group is None:
            from candor.store.group_commit import GroupCommit

            self.group = GroupCommit(self.writer, wait,
                                     after_commit=lambda erasing: self.checkpoint()
                                     if erasing or self._owed else None)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read_replica(self) -> Iterator[Connection]:
        """A read transaction for a search or a listing: on the replica when one is configured
        and has replayed every write the primary had when this began (so the read sees every
        write committed before it, from any node: the same rule as without a replica), else
        on the primary. The check costs one tiny query on each; the search itself, the heavy
        part, runs on the replica."""
        if self.replica is None:
            with self.read() as conn:
                yield conn
            return
        conn = self._caught_up_replica()
        if conn is None:
            self.replica_fallbacks += 1
            with self.read() as conn:
                yield conn
            return
        self.replica_reads += 1
        try:
            with conn.begin():
                yield conn
        finally:
            conn.close()

    def _caught_up_replica(self) -> Connection | None:
        with self.engine.connect() as primary:
            target = _lsn(primary.exec_driver_sql("SELECT pg_current_wal_insert_lsn()").scalar())
        try:
            conn = self.replica.connect()
        except ServiceUnavailable:
            log.warning("the read replica is unavailable: reading from the primary")
            return None
        deadline = time.monotonic() + self.replica_wait_s
        try:
            while True:
                replayed = conn.exec_driver_sql("SELECT pg_last_wal_replay_lsn()").scalar()
                conn.rollback()
                if replayed is not None and _lsn(replayed) >= target:
                    return conn
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.002)
        except ServiceUnavailable:
            pass
        conn.close()
        return None

    @staticmethod
    def mark_erasing(conn: Connection) -> None:
        """Note that this write transaction removes embeddings: checkpoint after its commit."""
        conn.info[_ERASING] = True

    def checkpoint(self, attempts: int = 2) -> bool:
        """Copy the write-ahead log into the database file and truncate the log to zero bytes.

        Guarantee: when this returns True, no byte of a committed deletion's old rows is left in
        ``candor.db-wal`` (the log is empty) and, with secure_delete, none in ``candor.db``.
        TRUNCATE must wait until no other connection (in this or another process) is writing or
        still reading an older snapshot; SQLite's busy handler waits up to
        :attr:`checkpoint_wait_ms` for that, ``attempts`` times. If a connection holds a
        transaction open longer, this logs a warning and returns False, and the checkpoint is
        owed: the end of every later write transaction in this process tries again (as do
        :meth:`close` and SQLite itself when the last connection closes). Until then the
        erased rows' old bytes remain in the log.
        """
        if not self.is_sqlite:
            return True
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(self.checkpoint_wait_ms)}")
            try:
                for _ in range(attempts):
                    busy, _frames, _copied = cur.execute(
                        "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    if not busy:
                        self._owed = False
                        return True
            finally:
                cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                cur.close()
        finally:
            raw.close()
        self._owed = True
        log.warning("could not checkpoint the write-ahead log: another connection holds the "
                    "database; erased rows stay in %s-wal until the next checkpoint", DB_NAME)
        return False

    def integrity_check(self) -> str:
        """SQLite's own ``PRAGMA integrity_check`` ("ok" when sound), plus foreign keys."""
        if not self.is_sqlite:
            return "ok"
        with self.engine.connect() as conn:
            result = conn.exec_driver_sql("PRAGMA integrity_check").scalars().all()
            fk = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        if fk:
            result = [*result, f"{len(fk)} foreign key violations"]
        return "\n".join(result)

    def close(self) -> None:
        """Empty the write-ahead log into the database, then release every connection."""
        if self.group is not None:
            self.group.close()
        self.checkpoint()
        self.engine.dispose()
        if self.replica is not None:
            self.replica.dispose()


def _lsn(text: str) -> int:
    """A PostgreSQL WAL position ``X/Y`` as one comparable number."""
    hi, _, lo = str(text).partition("/")
    return (int(hi, 16) << 32) + int(lo, 16)
