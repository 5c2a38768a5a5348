"""Two ``candor serve`` nodes on one PostgreSQL: stateless nodes sharing one truth.

Faces indexed through node A are found through node B at once (no node holds a private copy
of the vectors); both index at the same time through boto3; B is killed with ``kill -9`` in
the middle; afterwards every FaceId either node acknowledged is in the collection, and the
audit ledger, appended by both nodes at once, verifies as one chain (``candor audit verify
--database URL``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from serve_helper import CANDOR, SAMPLES, free_port

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="test photos not found")


def start_node(data: Path, url: str, log_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    err = log_dir / f"node-{port}.err"
    proc = subprocess.Popen([*CANDOR, "serve", "--port", str(port), "--data-dir", str(data),
                             "--workers", "2", "--database", url],
                            stdout=(log_dir / f"node-{port}.out").open("w"), stderr=err.open("w"))
    return proc, f"http://127.0.0.1:{port}"


def wait_up(proc: subprocess.Popen, endpoint: str, log: Path) -> None:
    for _ in range(900):
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(endpoint + "/healthz", timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("candor serve did not come up")


def rekognition(endpoint: str, key_id: str, secret: str):
    import boto3
    from botocore.config import Config

    return boto3.client("rekognition", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}, connect_timeout=30,
                                      read_timeout=120))


def photos() -> list[Path]:
    return sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def test_two_nodes_share_one_database_and_survive_kill_9(tmp_path, pg_url):
    from candor.api.keys import KeyStore

    a_dir, b_dir = tmp_path / "node-a", tmp_path / "node-b"
    a, a_url = start_node(a_dir, pg_url, tmp_path)
    b, b_url = start_node(b_dir, pg_url, tmp_path)
    try:
        wait_up(a, a_url, tmp_path)
        wait_up(b, b_url, tmp_path)
        key, secret = KeyStore.open(a_dir, pg_url).create("acme", "general")  # one key, both
        ca, cb = rekognition(a_url, key.access_key_id, secret), rekognition(b_url, key.access_key_id,
                                                                              secret)
        ca.create_collection(CollectionId="shared")
        obama = (SAMPLES / "obama" / "obama.jpg").read_bytes()
        first = ca.index_faces(CollectionId="shared", Image={"Bytes": obama}, MaxFaces=1,
                               ExternalImageId="obama")["FaceRecords"][0]["Face"]["FaceId"]
        # indexed through A, found through B at once
        found = cb.search_faces_by_image(CollectionId="shared", Image={"Bytes": obama},
                                         FaceMatchThreshold=80)["FaceMatches"]
        assert [m["Face"]["FaceId"] for m in found] == [first]

        pictures = [p for p in photos() if p.name != "obama.jpg"]
        random.Random(7).shuffle(pictures)
        acked: dict[str, set[str]] = {"a": {first}, "b": set()}
        errors: list[str] = []
        b_started = threading.Event()

        def index(name: str, client, batch: list[Path]) -> None:
            for path in batch:
                try:
                    resp = client.index_faces(CollectionId="shared", MaxFaces=1,
                                              Image={"Bytes": path.read_bytes()},
                                              ExternalImageId=path.parent.name)
                except Exception as exc:  # B's connections die with it; A must not fail
                    if name == "a":
                        errors.append(f"{path}: {exc!r}")
                    return
                acked[name].update(r["Face"]["FaceId"] for r in resp["FaceRecords"])
                if name == "b" and len(acked["b"]) >= 2:
                    b_started.set()

        threads = [threading.Thread(target=index, args=("a", ca, pictures[0::2][:10])),
                   threading.Thread(target=index, args=("b", cb, pictures[1::2][:10]))]
        for t in threads:
            t.start()
        assert b_started.wait(600), "node B acknowledged nothing"
        time.sleep(random.Random(11).uniform(0.0, 0.5))  # likely mid-request
        os.kill(b.pid, signal.SIGKILL)
        b.wait(timeout=30)
        for t in threads:
            t.join(timeout=900)
        assert not errors, errors
        assert acked["b"], "B acknowledged nothing before it died"

        # every acknowledged FaceId is there, seen through the surviving node
        stored: set[str] = set()
        token = None
        while True:
            page = ca.list_faces(CollectionId="shared", MaxResults=1000,
                                 **({"NextToken": token} if token else {}))
            stored.update(f["FaceId"] for f in page["Faces"])
            token = page.get("NextToken")
            if not token:
                break
        assert acked["a"] | acked["b"] <= stored
        # A's searches see B's faces (one truth, no private copy)
        some_b = sorted(acked["b"])[0]
        got = ca.search_faces(CollectionId="shared", FaceId=some_b, FaceMatchThreshold=0,
                              MaxFaces=100)
        assert got["SearchedFaceId"] == some_b

        # the ledger both nodes appended to at once is one intact chain
        verify = subprocess.run([*CANDOR, "audit", "verify", "--data-dir", str(a_dir),
                                 "--database", pg_url], capture_output=True, text=True,
                                timeout=300, env={**os.environ, "COLUMNS": "200"})
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "ok" in verify.stdout
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_a_restarting_database_is_a_retryable_503_and_the_node_recovers(tmp_path, pg_url,
                                                                         pg_server):
    """PostgreSQL restarts under a running node: calls meanwhile get ServiceUnavailable (503,
    which boto3 retries), never a 500, and the node serves again without a restart."""
    from botocore.exceptions import ClientError

    from candor.api.keys import KeyStore
    from candor.store import postgres_server

    node, endpoint = start_node(tmp_path / "node", pg_url, tmp_path)
    try:
        wait_up(node, endpoint, tmp_path)
        key, secret = KeyStore.open(tmp_path / "node", pg_url).create("acme", "general")
        client = rekognition(endpoint, key.access_key_id, secret)
        client.create_collection(CollectionId="c")
        postgres_server.stop(pg_server.info.data_dir, mode="fast")
        try:
            with pytest.raises(ClientError) as info:
                client.list_collections()
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert info.value.response["Error"]["Code"] == "ServiceUnavailableException"
        finally:
            postgres_server.start(pg_server.info.data_dir, fsync=False, create_database=False)
        assert client.list_collections()["CollectionIds"] == ["c"]
    finally:
        node.terminate()
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()


def test_a_read_replica_serves_searches_and_a_write_is_visible_to_the_next_search(
        tmp_path, pg_url, pg_server):
    """--read-replica: a streaming replica made by pg_basebackup from the same binaries serves
    searches and listings; a face just written is in the very next search (the replica is
    waited for, or the primary read), even with the replica's replay paused."""
    import tempfile

    import numpy as np
    import psycopg

    from candor.config import OPERATOR_ORG
    from candor.store import Store, postgres_server

    folder = Path(tempfile.mkdtemp(prefix="candor-test-replica-"))  # not under pytest's basetemp
    replica = postgres_server.start_replica(pg_server.info, folder, fsync=False)
    try:
        name = pg_url.rsplit("/", 1)[1]
        replica_url = replica.url(name)
        store = Store(tmp_path, url=pg_url, replica_url=replica_url)
        store.create_collection("c", "1.0")
        rng = np.random.default_rng(5)
        box = {"Width": 0.2, "Height": 0.3, "Left": 0.1, "Top": 0.1}

        def add(n: int):
            v = rng.standard_normal((n, 128)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            return v, store.add_faces("c", [{"embedding": x, "bbox": box, "confidence": 99.0,
                                             "image_id": "i", "model_version": "1.0"} for x in v])

        def replica_sessions() -> int:
            with psycopg.connect(replica.dsn("postgres"), autocommit=True) as conn:
                return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                    "application_name = 'candor-replica'").fetchone()[0]

        pk = store.collection("c", org=OPERATOR_ORG).id
        for _ in range(5):  # each write is in the next search
            vectors, rows = add(10)
            _, keys = store.face_index(pk).search(vectors[3], 1)
            assert keys[0] == rows[3].key
        assert replica_sessions() >= 1
        assert store.db.replica_reads >= 5  # the searches were served by the replica
        assert len(store.list_faces(pk, 0, 100)[0]) == 50

        with psycopg.connect(replica.dsn(name), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            try:
                vectors, rows = add(5)  # the replica cannot see these yet
                fallbacks = store.db.replica_fallbacks
                _, keys = store.face_index(pk).search(vectors[0], 1)
                assert keys[0] == rows[0].key  # read from the primary, not stale
                assert store.db.replica_fallbacks > fallbacks
            finally:
                conn.execute("SELECT pg_wal_replay_resume()")
        store.close()
    finally:
        postgres_server.stop(folder, mode="immediate")
        shutil.rmtree(folder, ignore_errors=True)
