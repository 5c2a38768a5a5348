"""Group commit (candor.store.group_commit): concurrent writers share one durable commit.

What must hold: every write is committed before its ``with`` block returns (a fresh connection
sees it), a writer's error undoes only its own work, a failed commit fails every writer of the
group and stores none of them, and the audit chain written by concurrent grouped appends
verifies, with the anchor at its head.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from postgres_helper import store_url
from sqlalchemy import text

from candor.store.database import Database, sqlite_url

N = 8


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    database = Database(sqlite_url(tmp_path))
    with database.write() as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
    database.group_commits(wait=3600.0)  # only the writers queued end a group's wait
    yield database
    database.close()


def rows(database: Database) -> set[int]:
    with database.engine.connect() as conn:  # a connection of its own: sees committed rows only
        return {r[0] for r in conn.execute(text("SELECT k FROM t"))}


def together(fn, n: int = N) -> dict[int, object]:
    """``fn(i)`` on ``n`` threads started together; each one's result or exception."""
    barrier = threading.Barrier(n)
    out: dict[int, object] = {}

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return out


def test_concurrent_writes_share_commits_and_each_is_durable_on_return(db: Database) -> None:
    def write(i: int) -> bool:
        with db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (:k, 'x')"), {"k": i})
        return i in rows(db)  # committed before the block returned

    out = together(write)
    assert all(out[i] is True for i in range(N)), out
    assert rows(db) == set(range(N))
    assert db.group.writes == N and db.group.commits < N


def test_a_writers_error_undoes_only_its_own_work(db: Database) -> None:
    def write(i: int) -> None:
        with db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (:k, 'x')"), {"k": i})
            if i == 3:
                raise ValueError("writer 3 changed its mind")

    out = together(write)
    assert isinstance(out[3], ValueError)
    assert rows(db) == set(range(N)) - {3}


def test_a_constraint_error_is_the_writers_own(db: Database) -> None:
    with db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (100, 'x')"))

    def write(i: int) -> None:
        with db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (:k, 'x')"), {"k": 100 if i == 5 else i})

    out = together(write)
    assert type(out[5]).__name__ == "IntegrityError"
    assert rows(db) == (set(range(N)) - {5}) | {100}


def test_a_failed_commit_fails_every_writer_of_its_group(db: Database) -> None:
    """A deferred foreign key violation surfaces at COMMIT: the whole group is refused, so no
    writer in it was acknowledged and none of their rows is stored."""
    with db.write() as conn:
        conn.execute(text("CREATE TABLE child (k INTEGER PRIMARY KEY, parent INTEGER "
                          "REFERENCES t(k) DEFERRABLE INITIALLY DEFERRED)"))

    def write(i: int) -> None:
        with db.write() as conn:
            if i == 0:
                conn.execute(text("INSERT INTO child VALUES (1, 9999)"))  # no such parent
            else:
                conn.execute(text("INSERT INTO t VALUES (:k, 'x')"), {"k": i})

    out = together(write)
    failed = [i for i in range(N) if isinstance(out[i], Exception)]
    assert 0 in failed
    assert rows(db) == set(range(N)) - set(failed)  # the failed group stored nothing
    with db.write() as conn:  # and the database takes writes again
        conn.execute(text("INSERT INTO t VALUES (200, 'y')"))
    assert 200 in rows(db)


def test_grouped_ledger_appends_chain_and_anchor(tmp_path: Path) -> None:
    from candor.governance.ledger import Ledger
    from candor.store import open_store

    store = open_store(tmp_path / "data", store_url())
    store.db.group_commits(wait=3600.0)
    ledger = Ledger.for_store(store)
    out = together(lambda i: ledger.append(operation="DetectFaces", decision="allow",
                                           principal=f"p{i}")["seq"], n=16)
    assert sorted(out.values()) == list(range(1, 17))
    assert store.db.group.commits < 16
    result = ledger.verify()
    assert result.ok, result
    assert ledger.read_anchor() == ledger.head()


def test_an_erasure_in_a_group_empties_the_log_after_its_commit(db: Database,
                                                                 tmp_path: Path) -> None:
    """A grouped write that deletes embeddings still leaves no old bytes in the WAL."""
    with db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (1, 'secret-bytes')"))
    with db.write() as conn:
        conn.execute(text("DELETE FROM t WHERE k = 1"))
        db.mark_erasing(conn)
    wal = tmp_path / "candor.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert b"secret-bytes" not in (tmp_path / "candor.db").read_bytes()


def test_a_rolled_back_append_is_not_the_next_appends_head(tmp_path: Path) -> None:
    """Appends of one group reuse the head the previous one wrote (no SELECT); a writer whose
    work is rolled back after it appended must not leave its record as that head, or the next
    record would chain onto a record that was never committed."""
    from candor.governance.ledger import Ledger
    from candor.store import open_store

    store = open_store(tmp_path / "data", store_url())
    store.db.group_commits(wait=3600.0)
    ledger = Ledger.for_store(store)

    def append(i: int) -> int:
        if i % 3 == 0:  # appends inside its own write, then fails: its record is undone
            with store.db.write():
                ledger.append(operation="DetectFaces", decision="allow", principal=f"p{i}")
                raise RuntimeError("the writer's own failure")
        return ledger.append(operation="DetectFaces", decision="allow", principal=f"p{i}")["seq"]

    out = together(append, n=16)
    kept = [v for v in out.values() if isinstance(v, int)]
    assert sum(isinstance(v, RuntimeError) for v in out.values()) == 6
    assert sorted(kept) == list(range(1, 11))  # contiguous: no record chained onto a ghost
    result = ledger.verify()
    assert result.ok, result
    assert ledger.head()[0] == 10


def test_an_append_inside_a_larger_write_is_anchored_only_once_that_write_commits(
        tmp_path: Path) -> None:
    """The anchor (ledger.head) witnesses committed records only: an audit record appended
    inside a larger write moves it once that write is durable, and never when the write is
    rolled back (an anchor ahead of the chain reads as deleted records: a false tamper alarm)."""
    from candor.governance.ledger import Ledger
    from candor.store import open_store

    store = open_store(tmp_path / "data", store_url())
    store.db.group_commits(wait=0.0)
    ledger = Ledger.for_store(store)
    ledger.append(operation="DetectFaces", decision="allow", principal="first")
    assert ledger.read_anchor()[0] == 1
    with pytest.raises(RuntimeError):
        with store.db.write():
            ledger.append(operation="IndexFaces", decision="allow", principal="ghost")
            raise RuntimeError("the writer fails after its audit record")
    assert ledger.read_anchor()[0] == 1
    assert ledger.verify().ok
    with store.db.write():
        ledger.append(operation="IndexFaces", decision="allow", principal="second")
        assert ledger.read_anchor()[0] == 1  # not before the write that holds it commits
    assert ledger.read_anchor()[0] == 2
    assert ledger.verify().ok
