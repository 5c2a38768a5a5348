"""Per-face embedding latency, dlib vs the ONNX backend, at batch 1 and batch 32.

Run: ``python bench/onnx_embed.py`` (add ``--cnn`` for CNN detection on a 640x480 frame).
Chips are real faces from the shared test photos when available (CANDOR_TEST_DATA), else
random pixels (the networks' cost does not depend on content). Both backends embed the same
chips in the same process; the table gives milliseconds per face and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from candor.models import get_backend
from candor.models.onnx_backend import OnnxBackend
from candor.system import available_cores

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CANDOR_TEST_DATA", REPO.parent / "shared" / "data" / "faces"))


def real_chips(dlib_backend, want: int) -> np.ndarray | None:
    import cv2

    chips = []
    for path in sorted((DATA / "lfw").glob("*/*_0001.jpg"))[: want * 2]:
        img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        boxes = dlib_backend.detect(img, "hog", 1)[:1]
        if boxes:
            chips.append(dlib_backend.chips(img, dlib_backend.landmarks(img, boxes, 5)))
        if len(chips) >= want:
            break
    return np.concatenate(chips) if chips else None


def per_face_ms(embed, chips: np.ndarray, batch: int, repeats: int) -> float:
    """Median over ``repeats`` calls of (call time / faces), in milliseconds."""
    x = chips[:batch] if len(chips) >= batch else np.resize(chips, (batch, *chips.shape[1:]))
    embed(x[:1])  # warm-up: lazy loading, allocator, thread pool
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        embed(x)
        times.append((time.perf_counter() - t) / batch * 1000)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats-1", type=int, default=15, help="calls at batch 1 (each backend)")
    ap.add_argument("--repeats-32", type=int, default=3, help="calls at batch 32 (each backend)")
    ap.add_argument("--cnn", action="store_true", help="also time CNN detection, 640x480 frame")
    args = ap.parse_args(argv)

    dlib_b = get_backend("dlib")
    onnx_b = OnnxBackend(data_dir=tempfile.mkdtemp(prefix="candor-bench-"))
    t = time.perf_counter()
    onnx_b.embed(np.zeros((1, 150, 150, 3), np.uint8))
    first_use = time.perf_counter() - t

    chips = real_chips(dlib_b, 32) if DATA.is_dir() else None
    source = f"{len(chips)} LFW faces" if chips is not None else "random pixels"
    if chips is None:
        chips = np.random.default_rng(0).integers(0, 256, (32, 150, 150, 3), dtype=np.uint8)

    print(f"cores available: {available_cores()}  chips: {source}  "
          f"ONNX first use (convert + load): {first_use:.2f} s")
    print(f"{'batch':>5}  {'dlib ms/face':>12}  {'onnx ms/face':>12}  {'speed-up':>8}")
    rows = []
    for batch, repeats in ((1, args.repeats_1), (32, args.repeats_32)):
        d = per_face_ms(dlib_b.embed, chips, batch, repeats)
        o = per_face_ms(onnx_b.embed, chips, batch, max(repeats, 5))
        rows.append((batch, d, o))
        print(f"{batch:>5}  {d:>12.1f}  {o:>12.2f}  {d / o:>7.1f}x")

    ref, got = dlib_b.embed(chips), onnx_b.embed(chips)
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    print(f"equality on these chips: min cosine {cos.min():.7f}, "
          f"max |diff| {np.abs(ref - got).max():.2e}")

    if args.cnn:
        import cv2

        frame = None
        sample = DATA / "samples" / "edge" / "obama-480p.jpg"
        if sample.is_file():
            frame = cv2.cvtColor(cv2.imread(str(sample)), cv2.COLOR_BGR2RGB)
            frame = cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA)
        else:
            frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        timings = {}
        for name, backend in (("dlib", dlib_b), ("onnx", onnx_b)):
            backend.detect(frame, "cnn", 0)
            reps = 2 if name == "dlib" else 5
            t = time.perf_counter()
            for _ in range(reps):
                found = backend.detect(frame, "cnn", 0)
            timings[name] = ((time.perf_counter() - t) / reps, len(found))
        (dt, dn), (ot, on) = timings["dlib"], timings["onnx"]
        print(f"CNN detect 640x480: dlib {dt * 1000:.0f} ms ({dn} faces), "
              f"onnx {ot * 1000:.0f} ms ({on} faces), speed-up {dt / ot:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
