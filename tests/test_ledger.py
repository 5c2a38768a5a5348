"""The audit chain: any single edit, deletion, insertion or reordering is caught by verify.

Each test runs on SQLite and on PostgreSQL (``database_url``, tests/postgres_helper.py); on
PostgreSQL the ledger writes through the store's writer engine, whose transactions take the
database's write lock, as every candor node's do."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, delete, event, insert, select, text, update

from candor.governance.ledger import GENESIS, AuditUnavailable, Ledger, record_hash
from candor.store import migrations
from candor.store.schema import audit_records as T

pytestmark = pytest.mark.usefixtures("database_url")


def _fast(dbapi_conn, _record):
    dbapi_conn.execute("PRAGMA synchronous = OFF")


@pytest.fixture()
def db(tmp_path, database_url):
    if database_url:
        from candor.store.database import Database

        pg = Database(database_url)  # the real schema and writer, as a node opens them
        yield pg.writer
        pg.close()
        return
    eng = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    event.listen(eng, "connect", _fast)  # tests need no durability; commits stay cheap
    migrations.migrate(eng)  # the real schema, as the store creates it
    yield eng
    eng.dispose()


def another_engine(tmp_path, database_url):
    """A second connection pool on the same database: another process."""
    if database_url:
        from candor.store.database import Database

        return Database(database_url).writer
    return create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")


def fill(ledger: Ledger, n: int = 10) -> None:
    for i in range(n):
        ledger.append(operation="SearchFacesByImage", decision="allow" if i % 3 else "deny",
                      principal=f"AK{i % 2}", org="acme" if i % 2 else "metro-pd",
                      category="media" if i % 2 else "law_enforcement", collection="c1",
                      image_sha256=[f"{i:064x}"], faces_found=1, threshold=99,
                      matches=[{"FaceId": f"face-{i}", "Similarity": 99.25}],
                      rule="default" if i % 3 else "police-moratorium-2020")


def rows(db):
    with db.connect() as c:
        return [dict(r) for r in c.execute(select(T).order_by(T.c.seq)).mappings()]


def test_chain_links_and_verifies(db):
    ledger = Ledger(db)
    fill(ledger)
    recs = rows(db)
    assert [r["seq"] for r in recs] == list(range(1, 11))
    assert recs[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(recs, recs[1:], strict=False))
    assert all(record_hash(r) == r["hash"] for r in recs)
    result = ledger.verify()
    assert result.ok and result.checked == 10 and result.head_seq == 10
    assert ledger.head() == (10, recs[-1]["hash"])


def test_edit_is_caught_at_the_edited_record(db):
    ledger = Ledger(db)
    fill(ledger)
    with db.begin() as c:
        c.execute(update(T).where(T.c.seq == 4).values(decision="allow"))
    result = ledger.verify()
    assert not result.ok and result.broken_seq == 4 and "edited" in result.problem


def test_edit_with_recomputed_hash_is_caught_at_the_next_link(db):
    ledger = Ledger(db)
    fill(ledger)
    rec = rows(db)[3]
    rec["threshold"] = 80.0
    with db.begin() as c:
        c.execute(update(T).where(T.c.seq == 4).values(threshold=80.0, hash=record_hash(rec)))
    result = ledger.verify()
    assert not result.ok and result.broken_seq == 5 and "prev_hash" in result.problem


@pytest.mark.parametrize("victim", [1, 5])
def test_deletion_is_caught(db, victim):
    ledger = Ledger(db)
    fill(ledger)
    with db.begin() as c:
        c.execute(delete(T).where(T.c.seq == victim))
    result = ledger.verify()
    assert not result.ok and result.broken_seq == victim + 1
    assert f"record {victim} is missing" in result.problem


def test_deleting_the_newest_records_is_caught_by_the_anchor(db, tmp_path):
    ledger = Ledger(db, anchor_path=tmp_path / "ledger.head")
    fill(ledger)
    assert ledger.read_anchor() == ledger.head()
    with db.begin() as c:
        c.execute(delete(T).where(T.c.seq >= 9))
    assert Ledger(db).verify().ok  # without a witness, a shorter chain looks whole
    result = ledger.verify()
    assert not result.ok and "newest records deleted" in result.problem


def test_swapping_two_records_is_caught(db):
    ledger = Ledger(db)
    fill(ledger)
    a, b = rows(db)[2], rows(db)[6]
    body = [k for k in T.c.keys() if k != "seq"]
    with db.begin() as c:  # hash is unique: park one record's hash while swapping
        c.execute(update(T).where(T.c.seq == 7).values(hash="parked"))
        c.execute(update(T).where(T.c.seq == 3).values(**{k: b[k] for k in body}))
        c.execute(update(T).where(T.c.seq == 7).values(**{k: a[k] for k in body}))
    result = ledger.verify()
    assert not result.ok and result.broken_seq == 3


def test_reordering_by_renumbering_is_caught(db):
    ledger = Ledger(db)
    fill(ledger)
    with db.begin() as c:  # give records 3 and 4 each other's place in the sequence
        c.execute(update(T).where(T.c.seq == 3).values(seq=1000))
        c.execute(update(T).where(T.c.seq == 4).values(seq=3))
        c.execute(update(T).where(T.c.seq == 1000).values(seq=4))
    result = ledger.verify()
    assert not result.ok and result.broken_seq == 3


def test_insertion_in_the_middle_is_caught(db):
    ledger = Ledger(db)
    fill(ledger)
    recs = rows(db)
    with db.begin() as c:  # make room at 6, then forge a well-formed record there
        for r in reversed(recs[5:]):
            c.execute(update(T).where(T.c.seq == r["seq"]).values(seq=r["seq"] + 1))
        forged = {**recs[5], "seq": 6, "prev_hash": recs[4]["hash"], "org": "nobody",
                  "request_id": "forged"}
        forged["hash"] = record_hash(forged)
        c.execute(insert(T).values(**forged))
    result = ledger.verify()
    assert not result.ok and result.broken_seq == 7


def test_append_that_cannot_be_written_raises(db):
    ledger = Ledger(db, retries=2)
    fill(ledger, 1)
    with db.begin() as c:
        c.execute(text("DROP TABLE audit_records"))
    with pytest.raises(AuditUnavailable):
        ledger.append(operation="DetectFaces", decision="allow")


def test_bad_records_are_refused_before_writing(db):
    ledger = Ledger(db)
    with pytest.raises(ValueError):
        ledger.append(operation="DetectFaces", decision="maybe")
    with pytest.raises(ValueError):
        ledger.append(operation="DetectFaces", decision="allow", image="raw bytes")
    with pytest.raises(AuditUnavailable):
        ledger.append(operation="CompareFaces", decision="allow", threshold=float("nan"))
    assert ledger.head() is None


def test_concurrent_writers_keep_one_chain(db, tmp_path, database_url):
    """Two ledgers on one database file stand for two processes; the chain must not fork."""
    other = another_engine(tmp_path, database_url)
    ledgers = [Ledger(db), Ledger(other)]

    def work(i):
        for _ in range(15):
            ledgers[i % 2].append(operation="DetectFaces", decision="allow", org=f"o{i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.dispose()
    result = Ledger(db).verify()
    assert result.ok and result.checked == 60


def test_tail_search_count_usage(db):
    ledger = Ledger(db)
    fill(ledger)
    assert [r["seq"] for r in ledger.tail(3)] == [8, 9, 10]
    assert [r["seq"] for r in ledger.search(org="metro-pd", decision="deny")] == [1, 7]
    assert [r["seq"] for r in ledger.search(face_id="face-4")] == [5]
    assert [r["seq"] for r in ledger.search(image_sha256=f"{2:064x}")] == [3]
    assert ledger.count(rule="police-moratorium-2020") == 4
    first = rows(db)[0]["ts"]
    assert ledger.usage("default", "acme", since=_parse(first)) == 3  # seq 2, 6, 8
    assert len(list(ledger.iter_records(batch=3, operation="SearchFacesByImage"))) == 10
    with pytest.raises(ValueError):
        ledger.search(colour="blue")


def _parse(ts: str):
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00"))
