"""The HTTP server's CPU per IndexFaces under concurrent clients: the load-robust measure of the
request path (issue 17), beside the throughput.

    python bench/http_server_cpu.py [--lfw 400] [--clients 8] [--profile OUT.txt]

Starts a real ``candor serve`` (fresh data dir, default policy), creates a collection, warms it
with 20 IndexFaces calls outside the clock, then indexes the seeded LFW View 1 sample of
bench/engine.py (section 4) with ``--clients`` boto3 clients on threads, and prints images per
second, the server process's CPU milliseconds per image (``/proc/<pid>/stat``, all its
threads) and the clients' own CPU per image. Wall-clock throughput moves with the machine's
load; the server's CPU per request moves much less, so compare builds by it, alternating them.
``--profile`` records the server with py-spy at 47 Hz (raw format) while the clients run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from engine import DEFAULT_DATA, lfw_view1  # noqa: E402  (bench siblings)
from http_api import start_server  # noqa: E402
from http_clients import boto_clients, run_clients, server_counts  # noqa: E402


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--lfw", type=int, default=400)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--profile", type=Path, default=None, help="py-spy raw output file")
    args = ap.parse_args()
    photos = [p.read_bytes() for p in lfw_view1(args.data / "lfw", args.lfw)]
    proc, url, key_id, secret = start_server(Path(tempfile.mkdtemp(prefix="candor-bench-")), None)
    spy = None
    try:
        clients = boto_clients(url, key_id, secret, args.clients)
        clients[0].create_collection(CollectionId="warm")
        clients[0].create_collection(CollectionId="bench")
        for photo in photos[:20]:
            clients[0].index_faces(CollectionId="warm", Image={"Bytes": photo}, MaxFaces=1)
        if args.profile:
            spy = subprocess.Popen(["py-spy", "record", "-r", "47", "-f", "raw", "-o", str(args.profile),
                                    "-p", str(proc.pid)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            time.sleep(1)
        before = server_counts(url)
        server0, own0, started = process_cpu(proc.pid), time.process_time(), time.perf_counter()
        run_clients(lambda i, photo: clients[i].index_faces(
            CollectionId="bench", Image={"Bytes": photo}, MaxFaces=1), photos, args.clients)
        wall = time.perf_counter() - started
        server = process_cpu(proc.pid) - server0
        own = time.process_time() - own0
        n = len(photos)
        print(f"{args.clients} clients, {n} LFW photos, load average {os.getloadavg()[0]:.1f}: "
              f"{n / wall:.1f} images/s; server CPU {1000 * server / n:.1f} ms per image; "
              f"clients' CPU {1000 * own / n:.1f} ms per image")
        after = server_counts(url)
        spent = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        if spent.get("candor_embed_batches"):
            one = spent.get("candor_embed_batches_one_thread", 0.0) / spent["candor_embed_batches"]
            print(f"{spent['candor_embed_faces'] / spent['candor_embed_batches']:.1f} faces per "
                  f"embedding call ({one:.0%} on one thread)", end="")
        if spent.get("candor_db_commits"):
            print(f"; {spent['candor_db_writes'] / spent['candor_db_commits']:.1f} writes per "
                  f"commit", end="")
        print()
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait()
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
