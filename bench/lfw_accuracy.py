"""LFW View 1 accuracy: threshold chosen on pairsDevTrain.txt, measured on pairsDevTest.txt.

    python bench/lfw_accuracy.py [--data ../shared/data/faces] [--detector hog+cnn] [--cache F]

Each image's face is the detected face nearest the centre (LFW images are centred on the
labelled person), found with HOG and, where HOG finds none, the CNN detector. Images where
no face is detected are counted and reported; a pair with such an image is scored as a
non-match (the pessimistic choice), never dropped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from candor.similarity import similarity_from_cosine

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", Path(__file__).parents[1] / ".." / "shared"
                                   / "data" / "faces"))


def read_pairs(path: Path) -> list[tuple[str, str, bool]]:
    """Pairs as (image path, image path, same person) from the LFW pairs format."""
    lines = path.read_text().split("\n")
    out = []
    for line in lines[1:]:
        parts = line.split()
        if len(parts) == 3:
            name, a, b = parts
            out.append((image_name(name, a), image_name(name, b), True))
        elif len(parts) == 4:
            n1, a, n2, b = parts
            out.append((image_name(n1, a), image_name(n2, b), False))
    return out


def image_name(person: str, number: str) -> str:
    return f"{person}/{person}_{int(number):04d}.jpg"


_engine = None


def _embed_one(args: tuple[str, str]) -> np.ndarray | None:
    """The embedding of the face nearest the image centre, or None if no face is found."""
    global _engine
    root, name = args
    if _engine is None:
        from candor.engine import Engine

        _engine = Engine(backend=os.environ.get("CANDOR_BACKEND"),
                         detector=os.environ.get("CANDOR_LFW_DETECTOR", "hog+cnn"))
    image, faces = _engine.analyse(os.path.join(root, name), landmarks=False)
    if not faces:
        return None
    cx, cy = image.width / 2, image.height / 2

    def off_centre(face):
        b = face.box
        return ((b.left + b.right) / 2 - cx) ** 2 + ((b.top + b.bottom) / 2 - cy) ** 2

    face = min(faces, key=off_centre)
    _engine.embed(image, [face])
    return face.embedding


def embed_all(root: Path, names: list[str], workers: int) -> dict[str, np.ndarray | None]:
    out: dict[str, np.ndarray | None] = {}
    with ProcessPoolExecutor(workers) as pool:
        for i, (name, emb) in enumerate(zip(names, pool.map(_embed_one, [(str(root), n) for n in
                                                                         names], chunksize=16))):
            out[name] = emb
            if (i + 1) % 500 == 0:
                print(f"  embedded {i + 1}/{len(names)}", file=sys.stderr)
    return out


def scores(pairs, emb) -> tuple[np.ndarray, np.ndarray]:
    """Similarity of each pair (-1 where a face is missing) and the same-person labels."""
    s, y = [], []
    for a, b, same in pairs:
        ea, eb = emb[a], emb[b]
        s.append(float(similarity_from_cosine(ea @ eb)) if ea is not None and eb is not None else -1)
        y.append(same)
    return np.array(s), np.array(y)


def best_threshold(s: np.ndarray, y: np.ndarray) -> float:
    candidates = np.unique(s)
    accs = [((s >= t) == y).mean() for t in candidates]
    return float(candidates[int(np.argmax(accs))])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--cache", type=Path, help="reuse/store embeddings in this .npz file")
    ap.add_argument("--detector", default="hog+cnn", help="hog, cnn or hog+cnn")
    args = ap.parse_args()
    os.environ["CANDOR_LFW_DETECTOR"] = args.detector  # read by the worker processes
    lfw = args.data / "lfw"
    train, test = read_pairs(lfw / "pairsDevTrain.txt"), read_pairs(lfw / "pairsDevTest.txt")
    names = sorted({n for a, b, _ in train + test for n in (a, b)})
    emb: dict[str, np.ndarray | None] = {}
    if args.cache and args.cache.exists():
        data = np.load(args.cache, allow_pickle=False)
        if str(data["detector"]) == args.detector:
            emb = {n: data["emb"][i] for i, n in enumerate(data["names"]) if data["found"][i]}
    t0 = time.perf_counter()
    todo = [n for n in names if n not in emb]
    if todo:
        print(f"embedding {len(todo)} images with {args.workers} workers ...", file=sys.stderr)
        emb.update(embed_all(lfw, todo, args.workers))
    elapsed = time.perf_counter() - t0
    if args.cache:
        found = np.array([emb[n] is not None for n in names])
        vectors = np.stack([emb[n] if emb[n] is not None else np.zeros(128, np.float32) for n in names])
        np.savez(args.cache, names=np.array(names), emb=vectors, found=found,
                 detector=np.array(args.detector))
    missing = [n for n in names if emb[n] is None]
    s_train, y_train = scores(train, emb)
    s_test, y_test = scores(test, emb)
    threshold = best_threshold(s_train, y_train)
    acc_train = ((s_train >= threshold) == y_train).mean()
    acc_test = ((s_test >= threshold) == y_test).mean()
    at80 = ((s_test >= 80) == y_test).mean()
    print(f"images: {len(names)}, no face detected: {len(missing)} "
          f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})")
    print(f"embedding time: {elapsed:.1f} s")
    print(f"threshold chosen on pairsDevTrain: similarity {threshold:.2f} "
          f"(train accuracy {acc_train:.4f})")
    print(f"LFW View 1 accuracy on pairsDevTest: {acc_test:.4f} ({len(test)} pairs)")
    print(f"accuracy on pairsDevTest at the default threshold 80: {at80:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
