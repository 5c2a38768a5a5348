"""Batching and grouped commits in a real ``candor serve``, driven by 8 concurrent boto3 clients.

Concurrent IndexFaces requests go through the embedding batcher and the grouped commits; what
they store must be exactly what the engine computes for each photo alone, every face must be
embedded through the batcher once, every request must be in the audit chain, and the chain
must verify.
"""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from postgres_helper import store_url
from prometheus_client.parser import text_string_to_metric_families
from serve_helper import DATA, client, serve

pytestmark = pytest.mark.skipif(not (DATA / "lfw").is_dir(),
                                reason=f"LFW photos not found at {DATA} (set CANDOR_TEST_DATA)")

CLIENTS = 8


def metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    return {s.name: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if not s.labels}


def test_concurrent_index_faces_store_what_the_engine_computes_alone(tmp_path: Path) -> None:
    from candor.face.engine import Engine
    from candor.governance.ledger import Ledger
    from candor.store import open_store

    photos = [p.read_bytes() for p in sorted((DATA / "lfw").glob("*/*_0001.jpg"))[:24]]
    data = tmp_path / "data"
    with serve(data, tmp_path, "--workers", str(CLIENTS)) as url:
        clients = [client(url, data, "batchers", "general")[2] for _ in range(CLIENTS)]
        clients[0].create_collection(CollectionId="c")
        with ThreadPoolExecutor(CLIENTS) as pool:
            responses = list(pool.map(
                lambda i: clients[i % CLIENTS].index_faces(CollectionId="c",
                                                           Image={"Bytes": photos[i]}),
                range(len(photos))))
        seen = metrics(url)

    indexed = sum(len(r["FaceRecords"]) for r in responses)
    assert indexed >= len(photos) - 2  # LFW photos: a face each, some with a second
    assert seen["candor_embed_faces"] == indexed  # every face through the batcher, once
    assert seen["candor_embed_batches"] <= indexed
    if not store_url():  # grouped commits are SQLite's (PostgreSQL commits each write)
        assert seen["candor_db_commits"] <= seen["candor_db_writes"]

    store = open_store(data, store_url())
    coll = store.collection("c", org="batchers")
    engine = Engine()
    for photo, resp in zip(photos, responses, strict=True):
        _, faces = engine.analyse(photo, embed=True, landmarks=False)
        by_box = {tuple(sorted(f.detail.bounding_box.to_dict().items())): f for f in faces}
        for record in resp["FaceRecords"]:
            face = by_box[tuple(sorted(record["Face"]["BoundingBox"].items()))]
            stored = store.face_embedding(coll.id, record["Face"]["FaceId"])
            np.testing.assert_allclose(stored, face.embedding, atol=1e-5)

    ledger = Ledger.for_store(store)
    assert ledger.verify().ok
    assert len(ledger.search(operation="IndexFaces", limit=None)) == len(photos)


def test_kill_9_under_8_clients_loses_no_acknowledged_face(tmp_path: Path) -> None:
    """kill -9 while 8 clients index: every FaceId a client got back is stored, every
    acknowledged call is in the audit chain, and the chain verifies."""
    import os
    import signal
    import subprocess
    import threading
    import time

    import boto3
    from botocore.config import Config
    from serve_helper import CANDOR, free_port

    from candor.api.keys import KeyStore
    from candor.governance.ledger import Ledger
    from candor.store import open_store

    photos = [p.read_bytes() for p in sorted((DATA / "lfw").glob("*/*_0001.jpg"))[:200]]
    data, port = tmp_path / "data", free_port()
    proc = subprocess.Popen([*CANDOR, "serve", "--port", str(port), "--data-dir", str(data),
                             "--workers", str(CLIENTS), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "err").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, (tmp_path / "err").read_text()
            try:
                urllib.request.urlopen(url + "/healthz", timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        key, secret = KeyStore.open(data, store_url()).create("crash", "general")
        clients = [boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                                aws_access_key_id=key.access_key_id, aws_secret_access_key=secret,
                                config=Config(retries={"max_attempts": 1}, read_timeout=120))
                   for _ in range(CLIENTS)]
        clients[0].create_collection(CollectionId="c")
        acknowledged: list[str] = []
        lock = threading.Lock()
        enough = threading.Event()

        def index(i: int) -> None:
            for photo in photos[i::CLIENTS]:
                try:
                    resp = clients[i].index_faces(CollectionId="c", Image={"Bytes": photo})
                except Exception:  # the server died under this request: not acknowledged
                    return
                with lock:
                    acknowledged.extend(r["Face"]["FaceId"] for r in resp["FaceRecords"])
                    if len(acknowledged) >= 24:
                        enough.set()

        threads = [threading.Thread(target=index, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        assert enough.wait(timeout=900), "the clients did not get 24 faces acknowledged"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        for t in threads:
            t.join(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()

    store = open_store(data, store_url())
    coll = store.collection("c", org="crash")
    with lock:
        acked = list(acknowledged)
    missing = [f for f in acked if store.face_embedding(coll.id, f) is None]
    assert not missing, f"{len(missing)} acknowledged faces lost"
    ledger = Ledger.for_store(store)
    result = ledger.verify()
    assert result.ok, result
    recorded = {m.get("FaceId") for r in ledger.search(operation="IndexFaces", limit=None)
                for m in (r.get("matches") or [])}
    assert set(acked) <= recorded  # every acknowledged face's call is in the chain
