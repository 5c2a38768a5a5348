"""Schema migrations on Alembic (candor.store.upgrade): a fresh database reaches head and is
exactly schema.py; data dirs made by the pre-Alembic scheme upgrade in place with their rows; a
database from a newer candor is refused; two processes on a fresh data dir migrate it once; and
the same upgrade on PostgreSQL when the embedded server is installed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from old_schema import strip_tenancy
from sqlalchemy import Engine, create_engine, inspect, text

from candor.config import OPERATOR_ORG
from candor.store import Store, migrations, schema, upgrade
from candor.store.database import configure_sqlite

#: the pre-Alembic scheme's list, as it was released: (version, name, body)
OLD_SCHEME = [
    (1, "initial schema", migrations._v1_initial),
    (2, "audit_records.details", migrations._v2_audit_details),
    (3, "collections.owner_org (tenancy)", migrations._v3_owner_org),
    (4, "seen_signatures (replay protection)", migrations._v4_seen_signatures),
    (5, "celebrity gallery", migrations._v5_celebrities),
    (6, "video_jobs", migrations._v6_video_jobs),
    (7, "reviews, operators, console sessions, face thumbnails", migrations._v7_review_console),
]
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def sqlite_engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}")
    configure_sqlite(engine)
    return engine


def old_scheme(engine: Engine, upto: int) -> None:
    """What the pre-Alembic ``migrate`` did, up to version ``upto``: schema_migrations, then
    each body in its own transaction with foreign keys off, recorded in schema_migrations."""
    with engine.begin() as conn:
        schema.schema_migrations.create(conn, checkfirst=True)
    for number, name, body in OLD_SCHEME[:upto]:
        with engine.connect() as conn:
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = OFF")
            with conn.begin():
                body(conn)
                conn.execute(schema.schema_migrations.insert().values(
                    version=number, name=name, applied_at=NOW))
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = ON")


def assert_matches_schema(engine: Engine) -> None:
    """Exactly schema.py: the tables and columns, and nothing Alembic's comparison of the live
    database with the metadata finds (types, nullability, indexes, unique and foreign keys)."""
    insp = inspect(engine)
    assert set(insp.get_table_names()) == set(schema.metadata.tables) | {"alembic_version"}
    for name, table in schema.metadata.tables.items():
        assert {c["name"] for c in insp.get_columns(name)} == set(table.columns.keys()), name
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, schema.metadata)
    if engine.dialect.name != "postgresql":  # the HNSW index exists on PostgreSQL only (ddl_if)
        diff = [d for d in diff if not (d[0] == "add_index" and d[1].name == "ix_faces_embedding_hnsw")]
    assert diff == []


def versions(engine: Engine) -> tuple[list[str], list[int]]:
    with engine.connect() as conn:
        return (conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all(),
                conn.exec_driver_sql("SELECT version FROM schema_migrations ORDER BY version"
                                     ).scalars().all())


def test_the_revisions_are_one_line_numbered_to_latest():
    script = upgrade.script_directory()
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions == [f"{n:04d}" for n in range(1, migrations.LATEST + 1)]
    assert script.get_current_head() == f"{migrations.LATEST:04d}"
    old = [script.get_revision(r).doc for r in revisions][:len(OLD_SCHEME)]
    assert old == [name for _, name, _ in OLD_SCHEME]  # the pre-Alembic ones keep their names


def test_a_fresh_database_upgrades_to_head_and_is_schema_py(tmp_path):
    engine = sqlite_engine(tmp_path / "candor.db")
    assert migrations.migrate(engine) == migrations.LATEST
    assert_matches_schema(engine)
    head = f"{migrations.LATEST:04d}"
    assert versions(engine) == ([head], list(range(1, migrations.LATEST + 1)))
    assert migrations.migrate(engine) == migrations.LATEST  # again: nothing to do
    assert versions(engine) == ([head], list(range(1, migrations.LATEST + 1)))


def _collection_row(collection_id: str) -> dict:
    return {"owner_org": OPERATOR_ORG, "collection_id": collection_id, "face_model_version": "1.0",
            "created_at": NOW, "tags": {"team": "a"}, "face_generation": 3,
            "user_generation": 0, "keep_thumbnails": False}


def _fill(engine: Engine) -> dict:
    """Rows in the version-1 tables: two collections (the newer one deleted, so the
    AUTOINCREMENT counter is ahead of the rows), a face, an idempotent response, an audit
    record."""
    with engine.begin() as conn:
        pk = conn.execute(schema.collections.insert().values(_collection_row("legacy"))
                          ).inserted_primary_key[0]
        gone = conn.execute(schema.collections.insert().values(_collection_row("gone"))
                            ).inserted_primary_key[0]
        conn.execute(schema.collections.delete().where(schema.collections.c.id == gone))
        conn.execute(schema.faces.insert().values(
            collection_pk=pk, face_id="f" * 36, image_id="i" * 36, external_image_id="ext",
            bbox_width=.5, bbox_height=.5, bbox_left=0, bbox_top=0, confidence=99.0,
            model_version="1.0", embedding=b"\0" * 512, created_at=NOW))
        conn.execute(schema.idempotency_tokens.insert().values(
            owner_org=OPERATOR_ORG, collection_id="legacy", operation="CreateUser", token="tok",
            request_hash="h", response={"ok": 1}, created_at=NOW))
        conn.execute(schema.audit_records.insert().values(
            ts="2026-01-02T03:04:05.000000Z", request_id="r", operation="IndexFaces",
            collection="legacy", decision="ALLOW", prev_hash="0" * 64, hash="a" * 64))
        token_key = conn.execute(text("SELECT value FROM settings WHERE key = 'token_key'")
                                 ).scalar()
    return {"pk": pk, "gone": gone, "token_key": token_key}


def _strip_to_v1(db: Path) -> None:
    """Give the version-1 tables their version-1 shape (version 1 of the old scheme created
    them from the schema of its day): before tenancy, and audit records without details."""
    strip_tenancy(db, "ALTER TABLE audit_records DROP COLUMN details;")


def _assert_rows_kept(data: Path, rows: dict) -> None:
    store = Store(data)  # a new candor process on the old data dir
    try:
        assert store.schema_version == migrations.LATEST
        assert store.integrity_check() == "ok"
        coll = store.collection("legacy", org=OPERATOR_ORG)
        assert (coll.id, coll.owner_org, coll.tags) == (rows["pk"], OPERATOR_ORG, {"team": "a"})
        assert coll.keep_thumbnails is False
        with store.read() as conn:
            faces = conn.exec_driver_sql("SELECT face_id, collection_pk FROM faces").all()
            assert faces == [("f" * 36, rows["pk"])]
            assert store.idempotent_response(conn, "legacy", "CreateUser", "tok", "h",
                                             org=OPERATOR_ORG) == {"ok": 1}
            assert conn.exec_driver_sql("SELECT hash, details FROM audit_records").all() == [
                ("a" * 64, None)]
            assert conn.exec_driver_sql("SELECT value FROM settings WHERE key = 'token_key'"
                                        ).scalar() == rows["token_key"]
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        # a deleted collection's key is still never reused
        assert store.create_collection("new", "1.0").id > rows["gone"]
    finally:
        store.close()
    engine = create_engine(f"sqlite:///{data / 'candor.db'}")
    assert_matches_schema(engine)
    assert versions(engine) == ([f"{migrations.LATEST:04d}"],
                                list(range(1, migrations.LATEST + 1)))


def test_a_version_1_data_dir_from_before_alembic_upgrades_in_place(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    engine = sqlite_engine(data / "candor.db")
    old_scheme(engine, upto=1)
    rows = _fill(engine)
    engine.dispose()
    _strip_to_v1(data / "candor.db")
    _assert_rows_kept(data, rows)


def test_a_version_6_data_dir_from_before_alembic_upgrades_in_place(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    engine = sqlite_engine(data / "candor.db")
    old_scheme(engine, upto=6)
    rows = _fill(engine)
    with engine.begin() as conn:  # version 6 had no thumbnails: its collections lack the flag
        conn.exec_driver_sql("ALTER TABLE collections DROP COLUMN keep_thumbnails")
        for column in ("owner", "lease_expires"):  # nor job leases (revision 0008)
            conn.exec_driver_sql(f"ALTER TABLE video_jobs DROP COLUMN {column}")
        conn.exec_driver_sql("INSERT INTO video_jobs (job_id, operation, status, params, "
                             "progress, frames, faces, matches, attempts, created_at, "
                             "updated_at) VALUES ('job-1', 'StartFaceDetection', 'SUCCEEDED', "
                             "'{}', 100, 1, 1, 0, 1, '2026-01-02', '2026-01-02')")
    assert not inspect(engine).has_table("reviews")
    engine.dispose()
    _assert_rows_kept(data, rows)
    with sqlite3.connect(data / "candor.db") as conn:
        assert conn.execute("SELECT job_id, status, owner, lease_expires FROM video_jobs"
                            ).fetchall() == [("job-1", "SUCCEEDED", None, None)]


def test_a_data_dir_the_old_scheme_finished_is_stamped_not_migrated_again(tmp_path):
    engine = sqlite_engine(tmp_path / "candor.db")
    old_scheme(engine, upto=len(OLD_SCHEME))
    assert not inspect(engine).has_table("alembic_version")
    assert migrations.migrate(engine) == migrations.LATEST
    assert versions(engine) == ([f"{migrations.LATEST:04d}"],
                                list(range(1, migrations.LATEST + 1)))
    with engine.connect() as conn:  # the old rows, not new ones; newer revisions added theirs
        assert set(conn.exec_driver_sql(f"SELECT applied_at FROM schema_migrations WHERE "
                                        f"version <= {len(OLD_SCHEME)}").scalars()
                   ) == {"2026-01-02 03:04:05.000000"}


def test_a_revision_this_candor_does_not_know_is_refused(tmp_path):
    engine = sqlite_engine(tmp_path / "candor.db")
    migrations.migrate(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0999'")
    with pytest.raises(migrations.SchemaTooNew, match="0999.*upgrade candor"):
        migrations.migrate(engine)
    with pytest.raises(migrations.SchemaTooNew):
        Store(tmp_path)
    assert versions(engine)[0] == ["0999"]  # refused, not touched


def test_two_processes_on_a_fresh_data_dir_migrate_it_once(tmp_path):
    """Several processes wait for one signal, then open the same fresh data dir at once: one
    migrates, the others queue on the lock and find it done (no duplicate rows, no error)."""
    _race(tmp_path, f"candor.store.Store(Path({str(tmp_path / 'data')!r})).close()", processes=3)
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'candor.db'}")
    assert versions(engine) == ([f"{migrations.LATEST:04d}"],
                                list(range(1, migrations.LATEST + 1)))
    assert_matches_schema(engine)


def _race(tmp_path: Path, code: str, processes: int) -> None:
    """Run ``code`` in ``processes`` interpreters released together: each says it is ready
    (imports done) and waits for the signal, given once all are ready."""
    go = tmp_path / "go"
    procs = []
    for n in range(processes):
        ready = tmp_path / f"ready-{n}"
        script = ("from pathlib import Path\nimport candor.store, time\n"
                  f"Path({str(ready)!r}).touch()\n"
                  f"while not Path({str(go)!r}).exists(): time.sleep(0.005)\n" + code)
        procs.append((ready, subprocess.Popen([sys.executable, "-c", script],
                                              stderr=subprocess.PIPE, text=True)))
    while not all(ready.exists() or proc.poll() is not None for ready, proc in procs):
        time.sleep(0.01)
    go.touch()
    for _, proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err


# -- PostgreSQL (the session's embedded server: tests/postgres_helper.py) ---------------------


@pytest.fixture()
def pg_database(pg_url):
    """A fresh, empty database on the session's server."""
    return pg_url


def test_postgres_fresh_database_upgrades_to_head_and_is_schema_py(pg_database):
    engine = create_engine(pg_database)
    assert migrations.migrate(engine) == migrations.LATEST
    assert_matches_schema(engine)
    head = f"{migrations.LATEST:04d}"
    assert versions(engine) == ([head], list(range(1, migrations.LATEST + 1)))
    assert migrations.migrate(engine) == migrations.LATEST
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0999'")
    with pytest.raises(migrations.SchemaTooNew):
        migrations.migrate(engine)
    engine.dispose()


def test_postgres_concurrent_first_opens_migrate_once(pg_database, tmp_path):
    _race(tmp_path, "from sqlalchemy import create_engine\n"
                    "from candor.store.migrations import migrate\n"
                    f"migrate(create_engine({pg_database!r}))", processes=3)
    engine = create_engine(pg_database)
    assert versions(engine) == ([f"{migrations.LATEST:04d}"],
                                list(range(1, migrations.LATEST + 1)))
    engine.dispose()
