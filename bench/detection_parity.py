"""Detection parity: per demographic group, how often each detector finds the labelled face.

    python bench/detection_parity.py [--data ../shared/data/faces] [--limit N] [--workers 2]
                                     [--cache /tmp/candor-detection-parity.json] [--json OUT]

On FairFace's validation crops (``fairface-val``, 224x224, one labelled face per image, centred)
every detector configuration candor can run is tried on every image:

- ``hog0`` / ``hog1``: dlib's HOG detector without / with one 2x upsampling
- ``cnn0`` / ``cnn1``: dlib's MMOD CNN detector (ONNX) without / with one 2x upsampling
- ``hog``, ``cnn``: the engine's working-resolution policy for images up to 1000 px: a pass
  without upsampling, and an upsampled pass only when the first found no face spanning a third
  of the image's shorter side (``candor.face.engine.PORTRAIT_FACE_FRACTION``); time is both passes'
- ``hog+cnn``: the engine's fallback, ``hog`` as above and ``cnn`` only where HOG found nothing

The policies are derived from the raw passes' results (same boxes), so each image is run through
each raw pass once. An image counts
as detected when a returned box contains the image centre (the labelled face; FairFace crops
are centred on it), so a bystander's face does not count. Per group: detection rate with a
95% Wilson interval, and the spread (highest minus lowest group rate, in points). Speed: mean
detection time per image on this machine (single-threaded ONNX Runtime per worker).

The groups are FairFace's annotations (``labels.csv``: race, gender); they are used here only
to measure, never to choose anything per face.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", Path(__file__).parents[1] / ".." / "shared"
                                   / "data" / "faces"))
RAW = ("hog0", "hog1", "cnn0", "cnn1")
CONFIGS = (*RAW, "hog", "cnn", "hog+cnn")
#: as candor.face.engine.PORTRAIT_FACE_FRACTION (kept here so the bench runs against older engines)
PORTRAIT_FACE_FRACTION = 1 / 3

_backend = None


def _detect_one(path: str) -> dict:
    """For each raw pass: [a box contains the centre, boxes found, detection time in ms, the
    largest box side as a fraction of the image's shorter side]."""
    global _backend
    if _backend is None:
        from candor.models.onnx_backend import OnnxBackend

        _backend = OnnxBackend(threads=1)
    from candor.face.imaging import load_image

    pixels = load_image(path).pixels
    h, w = pixels.shape[:2]
    cx, cy = w / 2, h / 2
    out = {}
    for config in RAW:
        t = time.perf_counter()
        boxes = _backend.detect(pixels, config[:3], int(config[3]))
        ms = (time.perf_counter() - t) * 1000
        hit = any(b.left <= cx <= b.right and b.top <= cy <= b.bottom for b in boxes)
        side = max((max(b.width, b.height) for b in boxes), default=0.0) / min(h, w)
        out[config] = [hit, len(boxes), round(ms, 2), round(side, 3)]
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def policy(row: dict, detector: str) -> list:
    """The engine's two-pass policy for one detector from the raw passes (images <= 1000 px)."""
    hit0, n0, ms0, side0 = row[detector + "0"]
    hit1, n1, ms1, side1 = row[detector + "1"]
    if n0 and side0 >= PORTRAIT_FACE_FRACTION:
        return [hit0, n0, ms0, side0]
    return [hit1, n1, round(ms0 + ms1, 2), side1]


def combined(row: dict) -> list:
    """hog+cnn: the HOG policy, and the CNN policy only where HOG found nothing."""
    hog, cnn = policy(row, "hog"), policy(row, "cnn")
    if hog[1]:
        return hog
    return [cnn[0], cnn[1], round(hog[2] + cnn[2], 2), cnn[3]]


def summarise(rows: dict[str, dict], labels: dict[str, dict], column: str) -> dict:
    groups = sorted({labels[f][column] for f in rows})
    out: dict = {"groups": groups, "configs": {}}
    for config in CONFIGS:
        per = {}
        for g in groups:
            files = [f for f in rows if labels[f][column] == g]
            hits = sum(bool(rows[f][config][0]) for f in files)
            lo, hi = wilson(hits, len(files))
            per[g] = {"n": len(files), "detected": hits, "rate": hits / len(files),
                      "ci95": [lo, hi]}
        rates = [v["rate"] for v in per.values()]
        times = [rows[f][config][2] for f in rows]
        all_hits = sum(bool(rows[f][config][0]) for f in rows)
        out["configs"][config] = {
            "groups": per, "overall": all_hits / len(rows),
            "spread_points": 100 * (max(rates) - min(rates)),
            "lowest": min(per, key=lambda g: per[g]["rate"]),
            "mean_ms": sum(times) / len(times),
        }
    return out


def table(summary: dict, title: str) -> str:
    groups = summary["groups"]
    head = "| detector | " + " | ".join(groups) + " | all | spread (points) | ms/image |"
    lines = [f"**{title}**", "", head, "|" + "---|" * (len(groups) + 4)]
    for config, s in summary["configs"].items():
        cells = [f"{100 * s['groups'][g]['rate']:.1f}" for g in groups]
        lines.append(f"| {config} | " + " | ".join(cells)
                     + f" | {100 * s['overall']:.1f} | {s['spread_points']:.1f} | {s['mean_ms']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (by file name)")
    ap.add_argument("--workers", type=int, default=min(2, len(os.sched_getaffinity(0))))
    ap.add_argument("--cache", type=Path, help="reuse/store per-image results in this JSON file")
    ap.add_argument("--json", type=Path, help="write the summary here")
    args = ap.parse_args()
    root = args.data / "fairface-val"
    with open(root / "labels.csv", newline="") as f:
        labels = {r["file"]: r for r in csv.DictReader(f)}
    files = sorted(labels, key=lambda n: int(Path(n).stem) if Path(n).stem.isdigit() else n)
    if args.limit:
        files = files[: args.limit]
    rows: dict[str, dict] = {}
    if args.cache and args.cache.exists():
        rows = {k: v for k, v in json.loads(args.cache.read_text()).items() if k in labels}
    todo = [f for f in files if f not in rows]
    if todo:
        print(f"detecting in {len(todo)} images with {args.workers} workers ...", file=sys.stderr)
        with ProcessPoolExecutor(args.workers) as pool:
            paths = [str(root / f) for f in todo]
            for i, (name, res) in enumerate(zip(todo, pool.map(_detect_one, paths, chunksize=8))):
                rows[name] = res
                if (i + 1) % 250 == 0:
                    print(f"  {i + 1}/{len(todo)}", file=sys.stderr)
                    if args.cache:
                        args.cache.write_text(json.dumps(rows))
        if args.cache:
            args.cache.write_text(json.dumps(rows))
    rows = {f: {**rows[f], "hog": policy(rows[f], "hog"), "cnn": policy(rows[f], "cnn"),
                "hog+cnn": combined(rows[f])} for f in files}
    summary = {"images": len(rows), "data": str(root),
               "race": summarise(rows, labels, "race"), "gender": summarise(rows, labels, "gender")}
    print(table(summary["race"], f"Detection rate (%) by race group, FairFace val, {len(rows)} images"))
    print()
    print(table(summary["gender"], "Detection rate (%) by gender"))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
