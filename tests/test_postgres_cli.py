"""``candor db start|url|stop`` (a local PostgreSQL from the wheel) and ``candor db migrate``
(a SQLite data dir moved to PostgreSQL with its ledger chain intact)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from serve_helper import CANDOR

from candor.config import OPERATOR_ORG
from candor.governance.ledger import Ledger
from candor.store import Store

BOX = {"Width": 0.2, "Height": 0.3, "Left": 0.1, "Top": 0.1}


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CANDOR, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_db_start_prints_a_url_candor_runs_on_and_stop_stops_it(tmp_path, pg_server):
    pytest.importorskip("psycopg")
    server = Path(tempfile.mkdtemp(prefix="candor-test-db-"))  # not under pytest's basetemp
    url = run("db", "start", "--data-dir", str(server)).stdout.strip()
    try:
        assert url.startswith("postgresql+psycopg://postgres:") and "@127.0.0.1:" in url
        assert run("db", "start", "--data-dir", str(server)).stdout.strip() == url  # running
        # any candor command runs on it, --database given after the command
        run("collection", "create", "c1", "--database", url, "--data-dir", str(tmp_path / "d"))
        # another data dir (another node) sees the same collections: the database is the truth
        assert "c1" in run("--database", url, "collection", "list", "--data-dir",
                           str(tmp_path / "e")).stdout
    finally:
        assert run("db", "stop", "--data-dir", str(server)).stdout.strip() == "stopped"
    assert run("db", "stop", "--data-dir", str(server)).stdout.strip() == "not running"
    assert run("db", "url", "--data-dir", str(server)).stdout.strip() == url  # kept for later
    assert oct((server / "server.json").stat().st_mode & 0o777) == "0o600"  # holds the password
    shutil.rmtree(server, ignore_errors=True)


def test_db_migrate_copies_everything_and_the_ledger_verifies(tmp_path, pg_url):
    data = tmp_path / "data"
    store = Store(data)
    store.create_collection("c", "1.0")
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((40, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = store.add_faces("c", [{"embedding": v, "bbox": BOX, "confidence": 99.0,
                                  "image_id": "i", "external_image_id": f"p{i}",
                                  "model_version": "1.0"} for i, v in enumerate(vectors)])
    store.delete_faces("c", [rows[-1].face_id])  # the highest key is gone: never reused
    ledger = Ledger.for_store(store)
    for i in range(25):
        ledger.append(operation="SearchFacesByImage", decision="allow", org="acme",
                      threshold=80.5, matches=[{"FaceId": rows[i].face_id, "Similarity": 91.25}],
                      details={"n": i, "nested": {"ok": True}})
    token = store.make_token("faces:c", 3)
    store.close()

    out = run("db", "migrate", "--from", str(data), "--to", pg_url).stdout
    assert "faces: 39" in out and "audit_records: 25" in out and "chain intact" in out
    assert run("audit", "verify", "--data-dir", str(data), "--database", pg_url).returncode == 0

    moved = Store(tmp_path / "node", url=pg_url)
    pk = moved.collection("c", org=OPERATOR_ORG).id
    faces = moved.list_faces(pk, 0, 1000)[0]
    assert [f.face_id for f in faces] == [r.face_id for r in rows[:-1]]
    _, keys = moved.face_index(pk).search(vectors[7], 1)
    assert keys[0] == rows[7].key  # same keys, same vectors, searched in pgvector
    new = moved.add_faces("c", [{"embedding": vectors[0], "bbox": BOX, "confidence": 99.0,
                                 "image_id": "j", "model_version": "1.0"}])
    assert new[0].key > rows[-1].key  # the deleted face's key is not handed out again
    assert moved.read_token(token, "faces:c") == 3  # the same token secret moved with it
    moved.close()
    # a second migrate into the same (now full) database is refused, nothing written
    again = run("db", "migrate", "--from", str(data), "--to", pg_url, check=False)
    assert again.returncode == 2 and "not empty" in again.stderr
