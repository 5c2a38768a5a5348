"""Face thumbnails for reviewers (issue 18): a collection made with --keep-thumbnails keeps a
small JPEG per indexed face; every deletion path removes it, and its bytes are then in no file
of the data dir (the approach of test_erasure_on_disk.py, with a distinctive blob)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from postgres_helper import store_url

from candor.governance.erasure import erase, purge, set_retention
from candor.governance.ledger import Ledger
from candor.store import Store


def blob(i: int) -> bytes:
    return os.urandom(1500) + f"thumb-{i}".encode()


def face(i: int, thumb: bytes | None) -> dict:
    import numpy as np

    v = np.random.default_rng(i).normal(size=128).astype(np.float32)
    return {"embedding": v / np.linalg.norm(v), "image_id": "img", "model_version": "1.0",
            "bbox": {"Width": .3, "Height": .3, "Left": .1, "Top": .1}, "confidence": 99.0,
            "external_image_id": "alice" if i < 2 else f"p{i}", "image_sha256": None,
            "thumbnail": thumb}


def on_disk(data_dir: Path, needle: bytes) -> bool:
    if store_url():
        pytest.skip("about the bytes in the data dir's SQLite files; PostgreSQL keeps deleted rows "
                    "in its own files until VACUUM (docs/postgres.md, Faults)")
    return any(needle in p.read_bytes() or needle[:64] in p.read_bytes()
               for p in data_dir.rglob("*") if p.is_file())


@pytest.fixture()
def seeded(tmp_path):
    store = Store(tmp_path / "data", url=store_url())
    store.create_collection("c", "1.0")
    assert store.set_keep_thumbnails("c", "operator")
    thumbs = [blob(i) for i in range(5)]
    rows = store.add_faces("c", [face(i, t) for i, t in enumerate(thumbs)])
    assert store.thumbnail(rows[0].face_id) == thumbs[0]
    assert store.thumbnail_ids([r.face_id for r in rows]) == {r.face_id for r in rows}
    yield store, rows, thumbs
    store.engine.dispose()


def test_delete_faces_removes_the_thumbnail(seeded):
    store, rows, thumbs = seeded
    store.delete_faces("c", [rows[3].face_id])
    assert store.thumbnail(rows[3].face_id) is None
    assert not on_disk(store.data_dir, thumbs[3]) and on_disk(store.data_dir, thumbs[4])


def test_erasure_removes_the_thumbnails(seeded):
    store, rows, thumbs = seeded
    assert erase(store, Ledger.for_store(store), external_image_id="alice").face_count == 2
    assert not on_disk(store.data_dir, thumbs[0]) and not on_disk(store.data_dir, thumbs[1])
    assert on_disk(store.data_dir, thumbs[2])


def test_delete_collection_and_purge_remove_the_thumbnails(seeded):
    store, rows, thumbs = seeded
    ledger = Ledger.for_store(store)
    set_retention(store, ledger, "c", 1)
    purge(store, ledger, now=datetime.now(timezone.utc) + timedelta(days=2))
    assert not any(on_disk(store.data_dir, t) for t in thumbs)
    store.create_collection("d", "1.0")
    store.set_keep_thumbnails("d", "operator")
    more = [blob(9)]
    store.add_faces("d", [face(9, more[0])])
    store.delete_collection("d")
    assert not on_disk(store.data_dir, more[0])


def test_turning_thumbnails_off_deletes_them(seeded):
    store, rows, thumbs = seeded
    store.set_keep_thumbnails("c", "operator", keep=False)
    assert store.thumbnail_ids([r.face_id for r in rows]) == set()
    assert not any(on_disk(store.data_dir, t) for t in thumbs)


def test_keep_thumbnails_through_the_cli(tmp_path):
    photos = Path(os.environ.get("CANDOR_TEST_DATA", "")) / "samples" / "identities" / "obama"
    if not photos.is_dir():
        pytest.skip("test photos not found")
    data = tmp_path / "data"

    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "candor.cli", *args, "--data-dir", str(data)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr

    cli("collection", "create", "kept", "--keep-thumbnails")
    cli("collection", "create", "plain")
    cli("index", "kept", str(photos / "obama.jpg"))
    cli("index", "plain", str(photos / "obama.jpg"))
    store = Store(data, url=store_url())
    ids = {c.collection_id: [f.face_id for f in store.list_faces(c.id, 0, 10)[0]]
           for c in store.all_collections()}
    assert len(store.thumbnail_ids(ids["kept"])) == 1 and not store.thumbnail_ids(ids["plain"])
    jpeg = store.thumbnail(ids["kept"][0])
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) < 20_000
    assert Ledger.for_store(store).search(operation="KeepThumbnails")


def test_a_decided_review_leaves_no_copy_of_its_probe(tmp_path):
    store = Store(tmp_path / "data", url=store_url())
    probe, now = blob(42), datetime.now(timezone.utc)
    for rid in ("rv-1", "rv-2"):
        store.create_review({"review_id": rid, "org": "o", "principal": "p", "category": "c",
                             "operation": "SearchFacesByImage", "request_id": "r",
                             "member": "FaceMatches", "created_at": now, "probe_jpeg": probe,
                             "expires_at": now + timedelta(hours=1)},
                            [{"candidate": "f-1", "similarity": 99.0, "match": {}}])
    assert on_disk(store.data_dir, probe)
    assert store.decide_review("rv-1", {"f-1": ("REJECTED", "no")}, "console:rita", now)
    assert store.expire_reviews(now + timedelta(hours=2)) == ["rv-2"]
    assert store.review_probe("rv-1") is None and not on_disk(store.data_dir, probe)
    store.engine.dispose()
