"""Bulk ingest through IndexFaces: two ``candor serve`` nodes on one PostgreSQL, beside one node on
SQLite (the embedded default) in the same run. Run as ``python bench/scale.py --ingest``.

    python bench/scale.py --ingest [--ingest-photos 1000] [--clients 8] [--database URL]

Each node is a real ``candor serve --database URL`` subprocess with its own data dir (so nothing
but the database is shared); ``--clients`` boto3 clients, half on each node, index the first
``--ingest-photos`` LFW photos (one face each, ``MaxFaces=1``) into one collection. Measured:
faces/s over the wall time (each node's models are loaded before the clock starts), and then
the check that matters for scale-out: every acknowledged FaceId is listed through the last
node. The baseline is one ``candor serve`` on a fresh SQLite data dir, same photos, clients.

The PostgreSQL store (issue 15) is a separate piece of work: when ``candor serve`` refuses
``--database`` (an unknown option, or a URL its store cannot open) the bench says "needs the
PostgreSQL store" with serve's own message and measures only the baseline.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

COLLECTION = "scale-ingest"


class Refused(Exception):
    """``candor serve`` exited before answering /healthz; the message is its last words."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(work: Path, name: str, database: str | None) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    out, err = work / f"{name}.out", work / f"{name}.err"
    cmd = [sys.executable, "-m", "candor.cli", "serve", "--port", str(port),
           "--data-dir", str(work / name), "--log-level", "warning"]
    if database:
        cmd += ["--database", database]
    proc = subprocess.Popen(cmd, stdout=out.open("w"), stderr=err.open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            last = [ln for ln in err.read_text().splitlines() if ln.strip()][-3:]
            raise Refused(" / ".join(last) or f"exit status {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2).read()
            return proc, url, out
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise Refused("no answer on /healthz within 180 s")


def keys_from(out: Path) -> tuple[str, str] | None:
    lines = dict(ln.split("=", 1) for ln in out.read_text().splitlines() if ln.startswith("AWS_"))
    if "AWS_ACCESS_KEY_ID" in lines:
        return lines["AWS_ACCESS_KEY_ID"], lines["AWS_SECRET_ACCESS_KEY"]
    return None


def client(url: str, key: tuple[str, str]):
    import boto3
    from botocore.config import Config

    return boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                      read_timeout=300, max_pool_connections=2))


def ingest(urls: list[str], key: tuple[str, str], photos: list[tuple[str, bytes]],
           clients: int) -> dict:
    """IndexFaces of every photo by ``clients`` threads spread over ``urls``; faces/s."""
    boto = [client(urls[i % len(urls)], key) for i in range(clients)]
    boto[0].create_collection(CollectionId=COLLECTION)
    for c in boto[: len(urls)]:  # load each node's models before the clock starts
        c.detect_faces(Image={"Bytes": photos[0][1]})
    todo: queue.Queue = queue.Queue()
    for p in photos:
        todo.put(p)
    acked: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        while True:
            try:
                name, data = todo.get_nowait()
            except queue.Empty:
                return
            try:
                r = boto[i].index_faces(CollectionId=COLLECTION, Image={"Bytes": data},
                                        ExternalImageId=name, MaxFaces=1)
                with lock:
                    acked.extend(f["Face"]["FaceId"] for f in r["FaceRecords"])
            except Exception as exc:  # counted and reported, the run goes on
                with lock:
                    errors.append(type(exc).__name__ + ": " + str(exc)[:200])

    t = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    # every acknowledged face, listed through the last node (the other one for half the clients)
    listed: set[str] = set()
    lister = client(urls[-1], key)
    for page in lister.get_paginator("list_faces").paginate(CollectionId=COLLECTION):
        listed.update(f["FaceId"] for f in page["Faces"])
    return {"nodes": len(urls), "clients": clients, "photos": len(photos), "faces": len(acked),
            "wall_s": round(wall, 1), "faces_per_s": round(len(acked) / wall, 2),
            "errors": len(errors), "first_errors": errors[:3],
            "acknowledged_missing_from_listing": len(set(acked) - listed)}


def measure(work: Path, database: str | None, nodes: int, photos, clients: int) -> dict:
    procs: list[subprocess.Popen] = []
    started = []
    try:
        for i in range(nodes):  # one at a time, so a refused second node leaves none running
            started.append(start_node(work, f"node{i}", database))
            procs.append(started[-1][0])
        key = next((k for _, _, out in started if (k := keys_from(out))), None)
        if key is None:
            return {"error": "no node printed an admin key (database not fresh?)"}
        return ingest([u for _, u, _ in started], key, photos, clients)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def main(args) -> None:
    import scale_pg

    data = args.data / "lfw"
    paths = sorted(data.glob("*/*.jpg"))[: args.ingest_photos]
    if not paths:
        sys.exit(f"no LFW photos under {data}")
    photos = [(p.stem, p.read_bytes()) for p in paths]
    env_note = {k: os.environ[k] for k in ("CANDOR_BACKEND", "CANDOR_DETECTOR") if k in os.environ}
    results: dict = {"photos": len(photos), "clients": args.clients, "settings": env_note,
                     "command": "python bench/scale.py " + " ".join(sys.argv[1:])}
    with tempfile.TemporaryDirectory(prefix="candor-ingest-") as tmp:
        work = Path(tmp)
        (work / "sqlite").mkdir()
        print(f"one node on SQLite: {len(photos)} photos, {args.clients} clients ...", flush=True)
        results["sqlite_one_node"] = measure(work / "sqlite", None, 1, photos, args.clients)
        print(results["sqlite_one_node"], flush=True)
        (work / "pg").mkdir()
        with scale_pg.server(args) as url:
            print(f"two nodes on PostgreSQL ({url}) ...", flush=True)
            try:
                results["postgresql_two_nodes"] = measure(work / "pg", url, 2, photos, args.clients)
            except Refused as exc:
                results["postgresql_two_nodes"] = {"skipped": "needs the PostgreSQL store",
                                                   "serve_said": str(exc)}
        print(results["postgresql_two_nodes"], flush=True)
    pg, lite = results["postgresql_two_nodes"], results["sqlite_one_node"]
    if "faces_per_s" in pg and lite.get("faces_per_s"):
        results["ratio_two_pg_nodes_to_one_sqlite_node"] = round(pg["faces_per_s"] / lite["faces_per_s"], 2)
    out = args.out if args.out.name != "scale.json" else args.out.with_name("scale-ingest.json")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written {out}")
