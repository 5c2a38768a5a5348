"""face_recognition's LFW View 1 accuracy with its defaults, by bench/lfw_accuracy.py's protocol.

    pip install --no-deps face_recognition
    python bench/face_recognition_lfw.py [--data ../shared/data/faces] [--workers 2]

The yardstick for "equal or better accuracy" in docs/benchmarks.md: face_recognition's
``face_locations`` (HOG, upsampling once) and ``face_encodings`` (5-point landmarks, no jitter)
on each of the 4,992 images; the face nearest the image centre; a pair with an image without
a face scored as a non-match; the distance threshold chosen on pairsDevTrain.txt (best
accuracy, on face_recognition's own Euclidean distance), accuracy measured on pairsDevTest.txt.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", Path(__file__).parents[1] / ".." / "shared"
                                   / "data" / "faces"))


def read_pairs(path: Path) -> list[tuple[str, str, bool]]:
    out = []
    for line in path.read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            out.append((f"{parts[0]}/{parts[0]}_{int(parts[1]):04d}.jpg",
                        f"{parts[0]}/{parts[0]}_{int(parts[2]):04d}.jpg", True))
        elif len(parts) == 4:
            out.append((f"{parts[0]}/{parts[0]}_{int(parts[1]):04d}.jpg",
                        f"{parts[2]}/{parts[2]}_{int(parts[3]):04d}.jpg", False))
    return out


def encode(path: str) -> np.ndarray | None:
    import face_recognition as fr

    image = fr.load_image_file(path)
    locations = fr.face_locations(image)
    if not locations:
        return None
    h, w = image.shape[:2]
    central = min(locations, key=lambda b: ((b[1] + b[3]) / 2 - w / 2) ** 2
                  + ((b[0] + b[2]) / 2 - h / 2) ** 2)
    return fr.face_encodings(image, [central])[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    lfw = args.data / "lfw"
    train, test = read_pairs(lfw / "pairsDevTrain.txt"), read_pairs(lfw / "pairsDevTest.txt")
    names = sorted({n for a, b, _ in train + test for n in (a, b)})
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        emb = dict(zip(names, pool.map(encode, [str(lfw / n) for n in names], chunksize=16)))

    def scores(pairs):
        s = [-float(np.linalg.norm(emb[a] - emb[b])) if emb[a] is not None and emb[b] is not None
             else -np.inf for a, b, _ in pairs]
        return np.array(s), np.array([same for _, _, same in pairs])

    s_train, y_train = scores(train)
    s_test, y_test = scores(test)
    candidates = np.unique(s_train[np.isfinite(s_train)])
    accuracy = [((s_train >= t) == y_train).mean() for t in candidates]
    threshold = candidates[int(np.argmax(accuracy))]
    print(f"images: {len(names)}, no face detected: {sum(e is None for e in emb.values())}, "
          f"time {time.perf_counter() - t0:.0f} s with {args.workers} processes")
    print(f"threshold chosen on pairsDevTrain: distance {-threshold:.4f} "
          f"(train accuracy {max(accuracy):.4f})")
    print(f"LFW View 1 accuracy on pairsDevTest: {((s_test >= threshold) == y_test).mean():.4f} "
          f"({len(test)} pairs)")
    print(f"at face_recognition's default tolerance 0.6: {((s_test >= -0.6) == y_test).mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
