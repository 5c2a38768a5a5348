"""Overhead of governance per request: policy decision + audit record, beside the bare call.

    python bench/governance.py [--photos DIR] [--repeat 3] [--policy moratorium-2020]

Runs DetectFaces on each photo through ``Service.call`` (governance off) and through
``Gate.call`` (policy decided, input hashed, one hash-chained record written durably to the
ledger in the store's SQLite database), interleaved so that both see the same caches, and
prints the median times and the overhead as a ratio. Target (issue 5): under 5% of DetectFaces.
Also times the governance path alone (a denied call: decision + record, no work).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", Path(__file__).parents[1] / ".." / "shared"
                                   / "data" / "faces")) / "samples"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--policy", default="moratorium-2020")
    ap.add_argument("--backend", default=None)
    args = ap.parse_args()

    from candor.governance.gate import Gate
    from candor.governance.principal import Principal
    from candor.service import Service

    photos = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    if not photos:
        print(f"no photos under {args.photos}", file=sys.stderr)
        return 2
    images = [p.read_bytes() for p in photos]
    service = Service(data_dir=tempfile.mkdtemp(prefix="candor-bench-"), backend=args.backend)
    gate = Gate.for_service(service, args.policy)
    press = Principal("AKBENCH", "daily-news", "media", kind="key")
    police = Principal("AKPOLICE", "metro-pd", "law_enforcement", kind="key")
    service.call("DetectFaces", {"Image": {"Bytes": images[0]}})  # load models off the clock

    def timed(fn) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    bare, governed = [], []
    for r in range(args.repeat):
        for i, data in enumerate(images):
            params = {"Image": {"Bytes": data}}
            run_bare = lambda p=params: service.call("DetectFaces", p)  # noqa: E731
            run_gated = lambda p=params: gate.call(press, "DetectFaces", p)  # noqa: E731
            if (i + r) % 2:  # alternate which goes first, so neither always finds warm caches
                bare.append(timed(run_bare))
                governed.append(timed(run_gated))
            else:
                governed.append(timed(run_gated))
                bare.append(timed(run_bare))

    denied = []
    for data in images * args.repeat:
        t = time.perf_counter()
        try:
            gate.call(police, "SearchFacesByImage", {"CollectionId": "c",
                                                     "Image": {"Bytes": data}})
        except Exception:
            pass
        denied.append(time.perf_counter() - t)

    b, g, d = (statistics.median(x) * 1000 for x in (bare, governed, denied))
    paired = statistics.median(y - x for x, y in zip(bare, governed, strict=True)) * 1000
    print(f"photos: {len(images)} x {args.repeat}, policy {args.policy}, "
          f"backend {service.backend_name}")
    print(f"DetectFaces, governance off : {b:8.2f} ms (median)")
    print(f"DetectFaces, through gate   : {g:8.2f} ms (median)")
    print(f"overhead, paired median     : {paired:8.2f} ms = {100 * paired / b:.1f}% "
          f"(target < 5%)")
    print(f"governance alone            : {d:8.2f} ms = {100 * d / b:.1f}% "
          "(a denied call: hash, decide, durable record; no work)")
    print(f"ledger: {gate.ledger.verify()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
