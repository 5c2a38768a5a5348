"""The store on its own (no face models): schema and migrations, durability settings, the FAISS
index kept in step with the database across instances, and pagination tokens.

Every test that is not about SQLite's files runs on SQLite and on PostgreSQL (the
``database_url`` fixture of tests/postgres_helper.py)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect, text

from candor.config import OPERATOR_ORG
from candor.errors import InvalidPaginationToken, ResourceAlreadyExists, ResourceNotFound
from candor.store import Store, migrations, schema

pytestmark = pytest.mark.usefixtures("database_url")

BOX = {"Width": 0.2, "Height": 0.3, "Left": 0.1, "Top": 0.1}


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def face_rows(vectors: np.ndarray, external: str = "x") -> list[dict]:
    return [{"embedding": v, "bbox": BOX, "confidence": 99.0, "image_id": "img",
             "external_image_id": external, "model_version": "1.0"} for v in vectors]


@pytest.fixture()
def store(tmp_path, database_url):
    s = Store(tmp_path, url=database_url)
    yield s
    s.close()


def sqlite_only(database_url: str | None) -> None:
    if database_url is not None:
        pytest.skip("about SQLite's files (WAL, saved FAISS indexes)")


def engine_of(tmp_path, database_url):
    return create_engine(database_url or f"sqlite:///{tmp_path / 'candor.db'}")


def test_fresh_database_matches_schema_module(tmp_path, database_url):
    """Migrating an empty database must give exactly the tables and columns schema.py declares
    (this is what keeps the migration list and the schema module honest), plus Alembic's own
    ``alembic_version``."""
    Store(tmp_path, url=database_url).close()
    engine = engine_of(tmp_path, database_url)
    insp = inspect(engine)
    assert set(insp.get_table_names()) == set(schema.metadata.tables) | {"alembic_version"}
    for name, table in schema.metadata.tables.items():
        assert {c["name"] for c in insp.get_columns(name)} == set(table.columns.keys()), name
    with engine.connect() as conn:
        assert migrations.current_version(conn) == migrations.LATEST


def test_migrations_run_once_and_refuse_newer_schema(tmp_path, database_url):
    Store(tmp_path, url=database_url).close()
    Store(tmp_path, url=database_url).close()  # second open: nothing to do, no duplicate rows
    engine = engine_of(tmp_path, database_url)
    with engine.begin() as conn:
        versions = conn.execute(text("SELECT version FROM schema_migrations")).scalars().all()
        assert versions == list(range(1, migrations.LATEST + 1))
        conn.execute(text("INSERT INTO schema_migrations VALUES (999, 'future', '2030-01-01')"))
    engine.dispose()
    with pytest.raises(migrations.SchemaTooNew):
        Store(tmp_path, url=database_url)


def test_sqlite_is_durable_wal(store, database_url):
    sqlite_only(database_url)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert store.integrity_check() == "ok"


def test_collection_lifecycle_errors(store):
    store.create_collection("c", "1.0")
    with pytest.raises(ResourceAlreadyExists):
        store.create_collection("c", "1.0")
    store.delete_collection("c")
    with pytest.raises(ResourceNotFound):
        store.collection("c", org=OPERATOR_ORG)
    with pytest.raises(ResourceNotFound):
        store.delete_collection("c")


def test_index_search_is_exact_and_deletions_immediate(store):
    store.create_collection("c", "1.0")
    vectors = unit_vectors(200)
    rows = store.add_faces("c", face_rows(vectors))
    coll = store.collection("c", org=OPERATOR_ORG)
    cosines, keys = store.face_index(coll.id).search(vectors[17], 3)
    assert keys[0] == rows[17].key and cosines[0] == pytest.approx(1.0, abs=1e-5)
    # brute force agrees with the index on the whole top 10
    want = np.argsort(-(vectors @ vectors[3]))[:10]
    _, got = store.face_index(coll.id).search(vectors[3], 10)
    assert [rows[i].key for i in want] == list(got)

    deleted, failed = store.delete_faces("c", [rows[17].face_id, "no-such-face"])
    assert deleted == [rows[17].face_id]
    assert failed == [{"FaceId": "no-such-face", "Reasons": ["FACE_NOT_FOUND"]}]
    _, keys = store.face_index(coll.id).search(vectors[17], 200)
    assert rows[17].key not in set(keys) and len(keys) == 199


def test_other_instance_sees_changes_at_once(tmp_path, database_url):
    """Two stores on one data dir stand for two processes: each change one makes is visible to
    the other's next search (the generation check), deletions included."""
    a, b = Store(tmp_path, url=database_url), Store(tmp_path, url=database_url)
    a.create_collection("c", "1.0")
    vectors = unit_vectors(50, seed=1)
    rows = a.add_faces("c", face_rows(vectors))
    pk = a.collection("c", org=OPERATOR_ORG).id
    assert b.face_index(pk).ntotal == 50
    a.delete_faces("c", [r.face_id for r in rows[:10]])
    extra = a.add_faces("c", face_rows(unit_vectors(5, seed=2)))
    index_b = b.face_index(pk)
    assert set(index_b.keys()) == {r.key for r in rows[10:]} | {r.key for r in extra}
    _, keys = index_b.search(vectors[0], 60)
    assert rows[0].key not in set(keys)
    a.close()
    b.close()


def test_saved_index_is_repaired_when_stale_and_rebuilt_when_missing_or_corrupt(tmp_path,
                                                                                  database_url):
    sqlite_only(database_url)
    s = Store(tmp_path)
    s.create_collection("c", "1.0")
    vectors = unit_vectors(100, seed=3)
    rows = s.add_faces("c", face_rows(vectors))
    pk = s.collection("c", org=OPERATOR_ORG).id
    s.face_index(pk)
    s.close()  # saves the index file
    path = s.vectors.index_path(("faces", pk))
    assert path.exists()

    # change the database behind the saved file's back
    other = Store(tmp_path)
    more = other.add_faces("c", face_rows(unit_vectors(3, seed=4)))
    other.engine.dispose()  # no save: the file is now stale

    expected = {r.key for r in rows} | {r.key for r in more}
    fresh = Store(tmp_path)
    assert set(fresh.face_index(pk).keys()) == expected
    fresh.engine.dispose()

    # a deletion by a process that holds no current index removes the saved file (it still
    # held the deleted face); the next process rebuilds from the database
    other = Store(tmp_path)
    other.delete_faces("c", [rows[0].face_id])
    other.engine.dispose()
    assert not path.exists()
    expected -= {rows[0].key}
    rebuilt = Store(tmp_path)
    assert set(rebuilt.face_index(pk).keys()) == expected
    rebuilt.close()
    assert path.exists()

    path.write_bytes(b"not a faiss index")
    repaired = Store(tmp_path)
    assert set(repaired.face_index(pk).keys()) == expected
    repaired.close()


def test_keys_are_never_reused(store):
    """The index and page tokens name faces by integer key: a deleted key must not come back."""
    store.create_collection("c", "1.0")
    rows = store.add_faces("c", face_rows(unit_vectors(3)))
    store.delete_faces("c", [rows[-1].face_id])
    again = store.add_faces("c", face_rows(unit_vectors(1, seed=9)))
    assert again[0].key > rows[-1].key


def test_pagination_tokens_are_signed_and_scoped(store):
    token = store.make_token("faces:abc", 42)
    assert store.read_token(token, "faces:abc") == 42
    _, mac = token.rsplit(".", 1)

    forged = base64.urlsafe_b64encode(json.dumps(["faces:abc", 1]).encode()).decode()
    for bad in (f"{forged}.{mac}", token[:-1] + ("0" if token[-1] != "0" else "1"), "garbage",
                ""):
        with pytest.raises(InvalidPaginationToken):
            store.read_token(bad, "faces:abc")
    with pytest.raises(InvalidPaginationToken):
        store.read_token(token, "faces:other")


def test_index_survives_wrong_instance_file(tmp_path, database_url):
    """An index file left by another database (same path, different instance) is ignored."""
    sqlite_only(database_url)
    s = Store(tmp_path / "a")
    s.create_collection("c", "1.0")
    s.add_faces("c", face_rows(unit_vectors(5)))
    pk = s.collection("c", org=OPERATOR_ORG).id
    s.face_index(pk)
    s.close()
    t = Store(tmp_path / "b")
    t.create_collection("c", "1.0")
    t.add_faces("c", face_rows(unit_vectors(2, seed=5)))
    target = t.vectors.index_path(("faces", pk))
    target.parent.mkdir(parents=True, exist_ok=True)
    src = s.vectors.index_path(("faces", pk))
    target.write_bytes(src.read_bytes())
    target.with_suffix(".json").write_bytes(src.with_suffix(".json").read_bytes())
    assert t.face_index(pk).ntotal == 2
    t.close()


def test_hnsw_variant_still_deletes_immediately(tmp_path, database_url):
    """HNSW cannot remove vectors: the store rebuilds it, so deletions still take effect (on
    PostgreSQL: pgvector's HNSW index, searched in the database)."""
    s = Store(tmp_path, url=database_url, index_kind="hnsw")
    s.create_collection("c", "1.0")
    vectors = unit_vectors(300, seed=11)
    rows = s.add_faces("c", face_rows(vectors))
    pk = s.collection("c", org=OPERATOR_ORG).id
    _, keys = s.face_index(pk).search(vectors[5], 1)
    assert keys[0] == rows[5].key
    s.delete_faces("c", [rows[5].face_id])
    _, keys = s.face_index(pk).search(vectors[5], 10)
    assert rows[5].key not in set(keys) and len(keys) == 10
    s.close()


def test_concurrent_threads_search_while_others_write(store):
    """The HTTP server runs operations on many threads: searches racing inserts and deletes
    must neither fail nor return a face that was deleted before the search began."""
    from concurrent.futures import ThreadPoolExecutor

    store.create_collection("c", "1.0")
    vectors = unit_vectors(400, seed=21)
    rows = store.add_faces("c", face_rows(vectors[:200]))
    pk = store.collection("c", org=OPERATOR_ORG).id
    deleted: set[int] = set()

    def writer(i: int) -> None:
        store.add_faces("c", face_rows(vectors[200 + 10 * i:210 + 10 * i]))
        victim = rows[i]
        store.delete_faces("c", [victim.face_id])
        deleted.add(victim.key)

    def reader(i: int) -> None:
        before = set(deleted)
        _, keys = store.face_index(pk).search(vectors[i % 200], 50)
        assert not before & set(keys)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(writer, i) for i in range(20)]
        futures += [pool.submit(reader, i) for i in range(200)]
        for f in futures:
            f.result()
    index = store.face_index(pk)
    assert index.ntotal == 200 + 200 - 20
    assert not deleted & set(index.keys())


WRITER = """
import sys, numpy as np
from candor.store import Store
s = Store(sys.argv[1], url=sys.argv[3] if len(sys.argv) > 3 else None)
try:
    s.create_collection("c", "1.0")
except Exception:
    pass
rng = np.random.default_rng(int(sys.argv[2]))
box = {"Width": 0.2, "Height": 0.3, "Left": 0.1, "Top": 0.1}
print("ready", flush=True)
while True:
    v = rng.standard_normal((3, 128)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    rows = s.add_faces("c", [{"embedding": x, "bbox": box, "confidence": 99.0, "image_id": "i",
                              "model_version": "1.0"} for x in v])
    print(" ".join(r.face_id for r in rows), flush=True)
    gone = s.delete_faces("c", [rows[0].face_id])[0]
    print("deleted " + " ".join(gone), flush=True)
"""


def test_kill_9_at_random_moments_of_a_write_loop(tmp_path, database_url):
    """Killed at arbitrary points of a tight commit loop (so often mid-commit), the database
    keeps every acknowledged insert and delete, and nothing half-written."""
    import random
    import signal
    import subprocess
    import sys
    import time

    rng = random.Random(3)
    acked, deleted, in_flight = set(), set(), set()
    for round_ in range(4):
        url = [database_url] if database_url else []
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(round_), *url],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 0.8))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        last = None
        for line in out.splitlines():
            if line.startswith("deleted"):
                deleted.update(line.split()[1:])
                last = None
            elif line.strip():
                acked.update(line.split())
                last = line.split()[0]
        if last:  # its delete may have committed unacknowledged when the kill came
            in_flight.add(last)
    assert len(acked) > 30
    s = Store(tmp_path, url=database_url)
    assert s.integrity_check() == "ok"
    coll = s.collection("c", org=OPERATOR_ORG)
    stored = {f.face_id for f in s.list_faces(coll.id, 0, 100_000)[0]}
    assert (acked - deleted - in_flight) <= stored
    assert not (deleted & stored)
    # each insert commits 3 faces at one timestamp (then 1 is deleted): a group of any other
    # size would be a half-written transaction
    faces = s.list_faces(coll.id, 0, 100_000)[0]
    from collections import Counter

    groups = Counter(f.created_at for f in faces)
    assert set(groups.values()) <= {2, 3}
    assert sum(n == 3 for n in groups.values()) <= 4  # at most one per killed run
    assert set(s.face_index(coll.id).keys()) == {f.key for f in faces}
    s.close()


def test_a_bad_index_kind_is_a_typed_error(tmp_path, database_url):
    from candor.errors import InvalidParameter

    with pytest.raises(InvalidParameter):
        Store(tmp_path, url=database_url, index_kind="lsh")


def test_schema_too_new_is_a_candor_error():
    """The CLI shows a CandorError as one line, not a traceback."""
    from candor.errors import CandorError, SchemaTooNew

    assert issubclass(migrations.SchemaTooNew, CandorError)
    assert migrations.SchemaTooNew is SchemaTooNew


def test_no_store_module_imports_its_own_package():
    """Parts import each other's modules (candor.store.schema), never the package __init__,
    which imports them all: that is how import cycles start."""
    import ast
    from pathlib import Path

    import candor.store

    for path in Path(candor.store.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "candor.store", f"{path.name}: from candor.store import"
            elif isinstance(node, ast.Import):
                assert all(a.name != "candor.store" for a in node.names), path.name


def test_the_store_does_not_read_the_environment():
    """Settings come in as parameters (candor.config is the one module reading os.environ)."""
    from pathlib import Path

    import candor.store

    for path in Path(candor.store.__file__).parent.glob("*.py"):
        assert "os.environ" not in path.read_text(), path.name
        assert "getenv" not in path.read_text(), path.name
