"""Group commit: concurrent writers' transactions committed together, one fsync for all.

With ``synchronous=FULL`` every SQLite commit waits for the disk, and SQLite has one writer at a
time, so a server whose requests each write three times (the replay table, the faces, the audit
record) is bounded by commits per second, not by its cores: measured under 8 clients on the
development machine, each commit took ~19 ms and the write path alone managed 17 IndexFaces/s.
A :class:`GroupCommit` keeps the guarantees and shares the wait: writers take turns on one
connection, each inside its own SAVEPOINT (a writer's error rolls back its own work only), and
the first writer of a group commits for everyone once the writers already queued behind it have
had their turn (at most ``wait`` seconds). Every writer returns only after the COMMIT that holds
its work has returned, so nothing is acknowledged before it is durable; if that COMMIT fails,
every writer of the group gets the error (none of them was acknowledged, none of their work is
stored). A lone writer commits at once.

``candor serve`` turns it on for SQLite (:meth:`candor.store.database.Database.group_commits`);
the CLI's commands write one transaction at a time as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection

log = logging.getLogger(__name__)

#: set on the shared connection when a writer's work could not be rolled back to its savepoint
_BROKEN = "candor_group_broken"


@contextmanager
def _savepoint(conn: Connection) -> Iterator[None]:
    """The writer's own savepoint, issued to the SQLite driver directly: SQLAlchemy's
    ``begin_nested`` costs ~0.25 ms of Python per writer (events, bookkeeping), held under the
    GIL on every write of every request, for a savepoint that never outlives the turn. An
    error rolls back to it, so only that writer's work is undone; SQLAlchemy's own nested
    transactions inside it (``conn.begin_nested()``) nest as before."""
    raw = conn.connection.dbapi_connection
    raw.execute("SAVEPOINT candor_writer")
    try:
        yield
    except BaseException:
        try:
            raw.execute("ROLLBACK TO SAVEPOINT candor_writer")
            raw.execute("RELEASE SAVEPOINT candor_writer")
        except Exception:  # the writer's work may be in the transaction: nobody commits it
            conn.info[_BROKEN] = True
        raise
    raw.execute("RELEASE SAVEPOINT candor_writer")


class GroupCommit:
    """Writers on ``writer`` (an engine whose transactions begin IMMEDIATE) sharing commits."""

    def __init__(self, writer: Any, wait: float = 0.005,
                 after_commit: Callable[[bool], Any] | None = None) -> None:
        self.writer = writer
        #: called after each commit, still in turn, with whether a writer of the group erased
        #: embeddings (the database checkpoints its log then)
        self.after_commit = after_commit
        #: set by a writer of the open group that erased embeddings
        self.erasing = False
        self.wait = max(0.0, wait)
        self._turn = threading.Lock()  # one writer at a time on the shared connection
        self._cond = threading.Condition()
        self._local = threading.local()
        self._conn: Connection | None = None
        self._txn: Any = None
        self._group = 0  # the open group's number
        self._done: dict[int, BaseException | None] = {}  # finished groups: None or the error
        self._waiting = 0  # writers queued for or inside their turn
        #: what a writer learned inside the open group's transaction that the next writer of
        #: the same group may reuse (the audit ledger's head): read and written only in turn,
        #: emptied when a group opens and whenever a writer's work is rolled back, so that
        #: nothing in it can outlive the rows it describes
        self.memo: dict[str, Any] = {}
        #: commits made and writes they held (what tests and benchmarks read)
        self.commits = 0
        self.writes = 0

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write on the shared connection: its own savepoint, committed with its group;
        returns (or raises the block's error) only once that commit is durable."""
        if getattr(self._local, "conn", None) is not None:  # nested: a savepoint inside ours
            pending, mark = self._local.pending, len(self._local.pending)
            try:
                with self._local.conn.begin_nested():
                    yield self._local.conn
            except BaseException:
                self.memo.clear()
                del pending[mark:]  # what this savepoint promised is undone with it
                raise
            return
        with self._cond:
            self._waiting += 1
        self._turn.acquire()
        error: BaseException | None = None
        try:
            with self._cond:
                self._waiting -= 1
                self._cond.notify_all()
            leader = self._txn is None
            if leader:
                self._open()
            group, conn = self._group, self._conn
            self._local.conn = conn
            pending = self._local.pending = []
            try:
                with _savepoint(conn):
                    yield conn
                self.writes += 1
            except BaseException as exc:
                self.memo.clear()
                error = exc
            finally:
                self._local.conn = self._local.pending = None
        finally:
            self._turn.release()
        if leader:
            self._commit(group)
        failed = self._wait_for(group)
        if error is not None:
            raise error
        if failed is not None:
            raise failed
        for action in pending:
            try:
                action()
            except Exception:  # a witness of the commit (the ledger anchor); the commit stands
                log.warning("an action after a group commit failed", exc_info=True)

    def after_this_commit(self, action: Callable[[], Any]) -> bool:
        """Run ``action`` once the calling thread's outermost write is durable (never if that
        write, or the savepoint that asked, is rolled back); False when the thread is not inside
        a write, so that what it wrote is already committed. The audit ledger anchors a record
        appended inside a larger write only this way: an anchor ahead of the committed chain
        reads as deleted records."""
        pending = getattr(self._local, "pending", None)
        if getattr(self._local, "conn", None) is None or pending is None:
            return False
        pending.append(action)
        return True

    def _open(self) -> None:
        if self._conn is None:
            self._conn = self.writer.connect()
        self._txn = self._conn.begin()
        self._group += 1
        self.memo.clear()

    def _commit(self, group: int) -> None:
        """Let the writers already queued take their turn (at most ``wait``), then commit."""
        deadline = time.monotonic() + self.wait
        with self._cond:
            while self._waiting > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        with self._turn:
            failed: BaseException | None = None
            erasing, self.erasing = self.erasing, False
            try:
                if self._conn.info.pop(_BROKEN, False):
                    raise RuntimeError("a writer's failed work could not be undone; the group "
                                       "is rolled back")
                self._txn.commit()
                self.commits += 1
            except BaseException as exc:  # the disk refused: nobody in the group is acknowledged
                failed = exc
                self._reset()
            self._txn = None
            self.memo.clear()
            if failed is None and self.after_commit is not None:
                try:
                    self.after_commit(erasing)
                except Exception:  # the checkpoint is owed and retried; the commit stands
                    pass
        with self._cond:
            self._done[group] = failed
            for old in [g for g in self._done if g < group - 64]:
                del self._done[old]
            self._cond.notify_all()

    def _wait_for(self, group: int) -> BaseException | None:
        with self._cond:
            while group not in self._done:
                self._cond.wait()
            return self._done[group]

    def _reset(self) -> None:
        """After a failed commit: roll back what is left and start on a fresh connection."""
        try:
            if self._txn is not None and self._txn.is_active:
                self._txn.rollback()
        except Exception:
            pass
        try:  # SQLite keeps a transaction open when COMMIT fails (a deferred constraint)
            raw = self._conn.connection.dbapi_connection
            if raw is not None and raw.in_transaction:
                raw.execute("ROLLBACK")
        except Exception:
            pass
        try:
            self._conn.close()
        except Exception:
            pass
        self._conn = None

    def close(self) -> None:
        with self._turn:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
