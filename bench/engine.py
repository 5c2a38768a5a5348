"""Detect + embed time per image and per face: candor beside face_recognition, same photos, same run.

    pip install --no-deps face_recognition     # the comparison library; it uses the same dlib models
    python bench/engine.py [--photos DIR ...] [--repeat 1]

Both tools decode the file, find every face and compute every face's 128-d embedding.
face_recognition runs with its defaults (HOG, upsampling once, 5-point landmarks, no
jitter); candor with its own (HOG at a capped working resolution, see docs/engine.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", Path(__file__).parents[1] / ".." / "shared"
                                   / "data" / "faces"))


def photos_in(folders: list[Path]) -> list[Path]:
    return sorted(p for f in folders for p in f.rglob("*")
                  if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def run_candor(paths: list[Path], backend: str | None) -> tuple[list[float], int]:
    from candor.engine import Engine

    engine = Engine(backend=backend)
    engine.analyse(paths[0], embed=True, landmarks=False)  # load the models outside the clock
    times, faces = [], 0
    for path in paths:
        t = time.perf_counter()
        _, found = engine.analyse(path, embed=True, landmarks=False)
        times.append(time.perf_counter() - t)
        faces += len(found)
    return times, faces


def run_face_recognition(paths: list[Path]) -> tuple[list[float], int]:
    import face_recognition as fr

    fr.face_encodings(fr.load_image_file(paths[0]))  # load the models outside the clock
    times, faces = [], 0
    for path in paths:
        t = time.perf_counter()
        image = fr.load_image_file(path)
        locations = fr.face_locations(image)
        encodings = fr.face_encodings(image, locations)
        times.append(time.perf_counter() - t)
        faces += len(encodings)
    return times, faces


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=Path, nargs="*",
                    default=[DEFAULT_DATA / "samples" / "identities", DEFAULT_DATA / "samples" / "groups"])
    ap.add_argument("--backend", default=None, help="candor backend (default: CANDOR_BACKEND or dlib)")
    args = ap.parse_args()
    # PIL (face_recognition) cannot read the WebP-in-.jpg sample; keep the photos both can read
    from candor.imaging import sniff_format

    paths = [p for p in photos_in(args.photos) if sniff_format(p.read_bytes()[:16]) in ("JPEG", "PNG")]
    if not paths:
        print("no photos found", file=sys.stderr)
        return 1
    try:
        import face_recognition  # noqa: F401
    except ImportError:
        print("face_recognition is not installed: pip install --no-deps face_recognition",
              file=sys.stderr)
        return 1
    print(f"{len(paths)} photos, {os.cpu_count()} cores\n")
    results = {"candor": run_candor(paths, args.backend), "face_recognition": run_face_recognition(paths)}
    print(f"{'tool':<18}{'faces':>7}{'total s':>10}{'ms/image':>11}{'median ms':>11}{'ms/face':>10}")
    for name, (times, faces) in results.items():
        total = sum(times)
        print(f"{name:<18}{faces:>7}{total:>10.2f}{1000 * total / len(times):>11.1f}"
              f"{1000 * statistics.median(times):>11.1f}{1000 * total / max(faces, 1):>10.1f}")
    c, f = (sum(results[k][0]) for k in ("candor", "face_recognition"))
    print(f"\nface_recognition time / candor time: {f / c:.2f}x (higher means candor is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
