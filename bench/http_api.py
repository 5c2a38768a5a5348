"""HTTP overhead: N concurrent boto3 clients calling DetectFaces on ``candor serve``, next to the
same requests run in-process on the same number of threads.

    python bench/http_api.py [--requests 2000] [--clients 8] [--workers N] [--photos 200]
                         [--data ../shared/data/faces] [--skip-in-process]

Photos are the first ``--photos`` LFW images (250x250 JPEG), cycled. The server is a real
``candor serve`` subprocess on a free loopback port, with a fresh data dir and the default
(open, audit-all) policy, so each HTTP request pays for SigV4, JSON/base64, the policy decision
and the audit record, as in production. The ratio of throughputs is the server's overhead.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", Path(__file__).parents[1] / ".." / "shared"
                                   / "data" / "faces"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def load_photos(data: Path, count: int) -> list[bytes]:
    paths = sorted((data / "lfw").glob("*/*.jpg"))[:count]
    if not paths:
        sys.exit(f"no LFW photos under {data / 'lfw'} (set --data or CANDOR_TEST_DATA)")
    return [p.read_bytes() for p in paths]


def run(fn, photos: list[bytes], requests: int, clients: int) -> dict:
    """``fn(client_index, photo)`` on ``clients`` threads until ``requests`` are done."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker(index: int) -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                fn(index, photos[i % len(photos)])
            except Exception as exc:  # counted, reported; a benchmark must not hide failures
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    wall = time.perf_counter() - started
    return {"requests": requests, "errors": len(errors), "first_errors": errors[:3],
            "wall_s": wall, "throughput": len(latencies) / wall,
            "p50_ms": percentile(latencies, 50) * 1e3 if latencies else float("nan"),
            "p99_ms": percentile(latencies, 99) * 1e3 if latencies else float("nan"),
            "mean_ms": statistics.fmean(latencies) * 1e3 if latencies else float("nan")}


def start_server(data_dir: Path, workers: int | None) -> tuple[subprocess.Popen, str, str, str]:
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = data_dir / "serve.out"
    cmd = [sys.executable, "-m", "candor.cli", "serve", "--port", str(port),
           "--data-dir", str(data_dir / "data"), "--log-level", "warning"]
    if workers:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=out.open("w"), stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("candor serve exited; run it by hand to see why")
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2).read()
            break
        except OSError:
            time.sleep(0.3)
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines()
                 if line.startswith("AWS_"))
    return proc, url, lines["AWS_ACCESS_KEY_ID"], lines["AWS_SECRET_ACCESS_KEY"]


def server_mean_ms(url: str) -> float:
    """Mean DetectFaces latency as the server measured it (its Prometheus histogram)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    values = {(s.name, s.labels.get("operation")): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    key = "candor_http_request_duration_seconds"
    count = values.get((f"{key}_count", "DetectFaces"), 0)
    return values.get((f"{key}_sum", "DetectFaces"), 0) / count * 1e3 if count else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=None,
                    help="candor serve --workers (default: its own default, the core count)")
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--skip-in-process", action="store_true")
    args = ap.parse_args()
    import boto3
    from botocore.config import Config

    photos = load_photos(args.data, args.photos)
    print(f"{args.requests} DetectFaces requests, {args.clients} clients, "
          f"{len(photos)} LFW photos, {os.cpu_count()} cores", flush=True)
    results = {}
    if not args.skip_in_process:
        from candor.service import Service

        with tempfile.TemporaryDirectory() as tmp:
            service = Service(data_dir=tmp)
            service.call("DetectFaces", {"Image": {"Bytes": photos[0]}})  # load the models
            results["in-process"] = run(
                lambda _i, photo: service.call("DetectFaces", {"Image": {"Bytes": photo}}),
                photos, args.requests, args.clients)
            print("in-process", results["in-process"], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key_id, secret = start_server(Path(tmp), args.workers)
        try:
            clients = [boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                                    aws_access_key_id=key_id, aws_secret_access_key=secret,
                                    config=Config(retries={"max_attempts": 1},
                                                  max_pool_connections=2))
                       for _ in range(args.clients)]
            clients[0].detect_faces(Image={"Bytes": photos[0]})  # connection + first call
            results["http"] = run(lambda i, photo: clients[i].detect_faces(
                Image={"Bytes": photo}), photos, args.requests, args.clients)
            print("http", results["http"], flush=True)
            results["http"]["server_mean_ms"] = server_mean_ms(url)
            print(f"server-side mean latency {results['http']['server_mean_ms']:.1f} ms "
                  "(from /metrics: request in to response out)", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    print()
    print("| path | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['requests']} | {r['errors']} | {r['throughput']:.1f} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    if "in-process" in results:
        ratio = results["http"]["throughput"] / results["in-process"]["throughput"]
        print(f"\nHTTP throughput is {ratio:.0%} of in-process.")
    if results["http"]["errors"]:
        print("errors:", results["http"]["first_errors"])
        sys.exit(1)


if __name__ == "__main__":
    main()
