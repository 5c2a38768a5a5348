"""The HTTP rows of ``bench/engine.py``: IndexFaces and SearchFacesByImage through a real
``candor serve`` with 1 and 8 boto3 clients, beside face_recognition and the engine's pipeline
(``candor.face.pipeline.analyse_many``) measured in the same run, as ratios.

    python bench/engine.py --only 6 --lfw 400          # these rows alone
    python bench/http_clients.py --lfw 400 [--clients 1,8] [--workers N]

The photos are taken in chunks of ``--chunk``; each chunk goes through every tool in turn
(face_recognition, the pipeline, then each HTTP row), so that all of them see the same machine
load. The server is started once, with a fresh data dir and the default (open, audit-all)
policy, and is warmed up outside the clock; every HTTP request pays for SigV4, JSON and base64,
the policy decision, the replay table, the store and the audit record, as in production. The
clients run in this process, on threads (boto3 clients are thread-safe, but each thread gets
its own, as an application with 8 workers would). IndexFaces with N clients indexes each chunk
into its own collection; SearchFacesByImage with N clients searches each photo of the chunk
against the collection the N-client IndexFaces row filled.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from http_api import start_server  # noqa: E402  (a bench sibling: bench/ is not a package)


def load() -> float:
    return os.getloadavg()[0]


def run_clients(fn: Callable[[int, bytes], object], photos: list[bytes],
                clients: int) -> list[float]:
    """``fn(client_index, photo)`` for every photo on ``clients`` threads; the latencies.
    A failed request is raised: a benchmark must not hide failures."""
    latencies: list[float] = []
    lock = threading.Lock()
    work = iter(photos)

    def worker(index: int) -> None:
        while True:
            with lock:
                photo = next(work, None)
            if photo is None:
                return
            t0 = time.perf_counter()
            fn(index, photo)
            with lock:
                latencies.append(time.perf_counter() - t0)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return latencies


def boto_clients(url: str, key_id: str, secret: str, n: int) -> list:
    import boto3
    from botocore.config import Config

    return [boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                         aws_access_key_id=key_id, aws_secret_access_key=secret,
                         config=Config(retries={"max_attempts": 1}, max_pool_connections=2))
            for _ in range(n)]


def http_rows(engine, paths: list[Path], chunk: int = 100, clients: tuple[int, ...] = (1, 8),
              workers: int | None = None, number: str = "6") -> dict[str, float]:
    """Measure and print the rows; returns images/s by row name."""
    import face_recognition as fr

    from candor.face.pipeline import analyse_many

    def run_fr(part: list[Path]) -> None:
        for path in part:
            image = fr.load_image_file(path)
            fr.face_encodings(image, fr.face_locations(image))

    def run_pipeline(part: list[Path]) -> None:
        for _ in analyse_many(engine, part):
            pass

    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key_id, secret = start_server(Path(tmp), workers)
        try:
            pool = boto_clients(url, key_id, secret, max(clients))
            for n in clients:
                pool[0].create_collection(CollectionId=f"bench-{n}")
            warm = paths[0].read_bytes()
            pool[0].create_collection(CollectionId="bench-warm")
            pool[0].index_faces(CollectionId="bench-warm", Image={"Bytes": warm})
            pool[0].search_faces_by_image(CollectionId="bench-warm", Image={"Bytes": warm})

            def index(n: int) -> Callable[[list[bytes]], list[float]]:
                return lambda photos: run_clients(lambda i, p: pool[i].index_faces(
                    CollectionId=f"bench-{n}", Image={"Bytes": p}), photos, n)

            def search(n: int) -> Callable[[list[bytes]], list[float]]:
                return lambda photos: run_clients(lambda i, p: pool[i].search_faces_by_image(
                    CollectionId=f"bench-{n}", Image={"Bytes": p}),
                    photos, n)

            tools: list[tuple[str, Callable]] = [
                ("face_recognition", run_fr), ("candor, pipeline (in-process)", run_pipeline)]
            for n in clients:
                tools.append((f"HTTP IndexFaces, {n} client{'s' if n > 1 else ''}", index(n)))
            for n in clients:
                tools.append((f"HTTP SearchFacesByImage, {n} client{'s' if n > 1 else ''}",
                              search(n)))
            run_fr(paths[:1])
            run_pipeline(paths[:1])  # models loaded outside the clock
            spent = {name: 0.0 for name, _ in tools}
            latencies: dict[str, list[float]] = {name: [] for name, _ in tools}
            loads = [load()]
            for start in range(0, len(paths), chunk):
                part = paths[start:start + chunk]
                photos = [p.read_bytes() for p in part]
                for name, fn in tools:
                    http = name.startswith("HTTP")
                    t = time.perf_counter()
                    out = fn(photos if http else part)
                    spent[name] += time.perf_counter() - t
                    if http:
                        latencies[name] += out
                loads.append(load())
            shared = server_counts(url)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    rates = {name: len(paths) / spent[name] for name, _ in tools}
    base, pipe = rates["face_recognition"], rates["candor, pipeline (in-process)"]
    print(f"{number}. HTTP on the same photos: {len(paths)} images, chunks of {chunk}, "
          f"load average {min(loads):.1f}-{max(loads):.1f}")
    for name, _ in tools:
        lat = latencies[name]
        p50 = f"p50 {statistics.median(lat) * 1000:>6.1f} ms" if lat else " " * 16
        print(f"   {name:40}{rates[name]:>8.1f} images/s  {p50}  ratio {rates[name] / base:>5.1f}x"
              f"  vs pipeline {rates[name] / pipe:>5.2f}x")
    if shared.get("candor_embed_batches"):
        print(f"   the server embedded {shared['candor_embed_faces'] / shared['candor_embed_batches']:.1f}"
              " faces per network call", end="")
    if shared.get("candor_db_commits"):
        print(f"; {shared['candor_db_writes'] / shared['candor_db_commits']:.1f} writes per commit",
              end="")
    print("\n")
    return rates


def server_counts(url: str) -> dict[str, float]:
    """The server's batching counts from /metrics (absent on a server without them)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    return {s.name: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name.startswith(("candor_embed", "candor_db"))}


def main() -> int:
    from engine import DEFAULT_DATA, lfw_view1

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--lfw", type=int, default=400)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--workers", type=int, default=None, help="candor serve --workers")
    args = ap.parse_args()
    from candor.face.engine import Engine

    print(f"load average {load():.1f} at start")
    http_rows(Engine(), lfw_view1(args.data / "lfw", args.lfw), args.chunk,
              tuple(int(c) for c in args.clients.split(",")), args.workers)
    print(f"load average {load():.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
