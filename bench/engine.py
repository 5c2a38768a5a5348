"""candor's engine beside face_recognition, same photos, same run, as ratios.

    pip install --no-deps face_recognition     # the comparison library; it uses the same dlib models
    python bench/engine.py [--lfw 500] [--chunk 100] [--repeats 12] [--rounds 2] [--only 123456]
        [--backend onnx]

Six measurements, each against face_recognition (or the dlib networks it calls) in the same
process, the two tools alternating so that both see the same machine load:

1. Embedding, milliseconds per face at batch 1 and batch 32: dlib's ResNet as face_recognition
   runs it, the same network in ONNX Runtime (one pass), and candor's embedding (two passes:
   the chip and its mirror image, see docs/engine.md).
2. CNN (MMOD) detection of one 640x480 frame, no upsampling: face_recognition's
   ``face_locations(model="cnn")`` against candor's backend.
3./4. End to end, images per second: decode the file, find every face, embed every face.
   face_recognition with its defaults (one process, HOG upsampling once, 5-point landmarks,
   no jitter); candor with its defaults, one image at a time (``Engine.analyse``) and through
   the bulk pipeline (``candor.face.pipeline.analyse_many``: decode and detect on a thread pool,
   embed in batches), on ``samples/identities`` and on a seeded sample of LFW View 1 images.
   The photos are taken in chunks of ``--chunk``; each chunk goes through the three in turn.
5. ``candor index`` as a user runs it: the real CLI in a subprocess (start-up, imports, model
   sessions, the store and the audit ledger included) indexing the same LFW sample into a new
   collection, against face_recognition over the same photos, alternating, ``--rounds`` times
   each. The data dir is prepared by one earlier ``candor index`` of one photo (its model
   caches exist, as on any machine after the first run), which also leaves candor's byte-code
   as an installed package has it (``PYTHONPYCACHEPREFIX`` in the temporary directory, even
   where the environment sets ``PYTHONDONTWRITEBYTECODE``).
6. HTTP: IndexFaces and SearchFacesByImage through ``candor serve`` with 1 and 8 boto3 clients,
   beside face_recognition and the pipeline in the same run (``bench/http_clients.py``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", Path(__file__).parents[1] / ".." / "shared"
                                   / "data" / "faces"))


def photos_in(folders: list[Path]) -> list[Path]:
    return sorted(p for f in folders for p in f.rglob("*")
                  if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def lfw_view1(root: Path, n: int, seed: int = 20200610) -> list[Path]:
    """``n`` images (all when n <= 0) of the 4,992 that LFW View 1's pairs files name."""
    names = set()
    for pairs in ("pairsDevTrain.txt", "pairsDevTest.txt"):
        for line in (root / pairs).read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) == 3:
                names |= {(parts[0], parts[1]), (parts[0], parts[2])}
            elif len(parts) == 4:
                names |= {(parts[0], parts[1]), (parts[2], parts[3])}
    paths = sorted(root / p / f"{p}_{int(i):04d}.jpg" for p, i in names)
    return random.Random(seed).sample(paths, n) if 0 < n < len(paths) else paths


def load(): return os.getloadavg()[0]  # noqa: E704


# ------------------------------------------------------------------ 1. embedding latency


def embedding_latency(engine, repeats: int) -> None:
    import dlib  # noqa: F401
    import face_recognition as fr

    from candor.models import get_backend

    dlib_b = get_backend("dlib")
    chips = []
    for path in sorted((DEFAULT_DATA / "lfw").glob("*/*_0001.jpg"))[:64]:
        img = fr.load_image_file(path)
        boxes = dlib_b.detect(img, "hog", 1)[:1]
        if boxes:
            chips.append(dlib_b.chips(img, dlib_b.landmarks(img, boxes, 5)))
        if len(chips) == 32:
            break
    chips = np.concatenate(chips)
    net = fr.api.face_encoder  # the dlib network object face_recognition itself calls

    def dlib_embed(x):
        return net.compute_face_descriptor([np.ascontiguousarray(c) for c in x])

    tools = [("dlib (face_recognition)", dlib_embed),
             (f"{engine.backend.name}, one pass", engine.backend.embed),
             (f"candor ({engine.backend.name}, chip + mirror)", engine.embed_chips)]
    print(f"1. embedding, ms per face (LFW chips; median of {repeats} timed calls per batch size "
          "after one warm-up; tools alternate)")
    results: dict[tuple[str, int], list[float]] = {}
    for batch in (1, 32):
        x = chips[:batch]
        for _, fn in tools:
            fn(x)  # warm-up
        for _ in range(repeats if batch == 1 else max(2, repeats // 4)):
            for name, fn in tools:
                t = time.perf_counter()
                fn(x)
                results.setdefault((name, batch), []).append(
                    (time.perf_counter() - t) / batch * 1000)
    print(f"   {'':38}{'batch 1':>10}{'batch 32':>10}{'ratio@1':>10}{'ratio@32':>10}")
    base = {b: statistics.median(results[(tools[0][0], b)]) for b in (1, 32)}
    for name, _ in tools:
        m = {b: statistics.median(results[(name, b)]) for b in (1, 32)}
        print(f"   {name:38}{m[1]:>10.2f}{m[32]:>10.2f}{base[1] / m[1]:>9.1f}x{base[32] / m[32]:>9.1f}x")
    print("   (ratio = dlib's time / this row's time, higher is faster)\n")


# ------------------------------------------------------------------ 2. CNN detection


def cnn_detection(engine, repeats: int) -> None:
    import cv2
    import face_recognition as fr

    frame = fr.load_image_file(DEFAULT_DATA / "samples" / "edge" / "obama-480p.jpg")
    frame = cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA)
    tools = [("face_recognition (dlib)", lambda: fr.face_locations(frame, 0, "cnn")),
             (f"candor ({engine.backend.name})", lambda: engine.backend.detect(frame, "cnn", 0))]
    times: dict[str, list[float]] = {}
    found = {}
    for name, fn in tools:
        found[name] = len(fn())  # warm-up (and, for ONNX, conversion on first use)
    for _ in range(repeats):
        for name, fn in tools:
            t = time.perf_counter()
            fn()
            times.setdefault(name, []).append(time.perf_counter() - t)
    print(f"2. CNN detection of one 640x480 frame, no upsampling (median of {repeats})")
    base = statistics.median(times[tools[0][0]])
    for name, _ in tools:
        m = statistics.median(times[name])
        print(f"   {name:38}{m * 1000:>9.0f} ms  faces {found[name]}  ratio {base / m:.1f}x")
    print()


# ------------------------------------------------------------------ 3. end to end


def end_to_end(engine, number: str, label: str, paths: list[Path], chunk: int) -> None:
    import face_recognition as fr

    from candor.face.pipeline import analyse_many

    def run_fr(part):
        counts = []
        for path in part:
            image = fr.load_image_file(path)
            counts.append(len(fr.face_encodings(image, fr.face_locations(image))))
        return counts

    def run_sequential(part):
        return [len(engine.analyse(p, embed=True, landmarks=False)[1]) for p in part]

    def run_pipeline(part):
        return [len(r.faces) for r in analyse_many(engine, part)]

    tools = [("face_recognition", run_fr), ("candor, one at a time", run_sequential),
             ("candor, pipeline", run_pipeline)]
    for _, fn in tools:
        fn(paths[:1])  # models loaded outside the clock
    spent = {name: 0.0 for name, _ in tools}
    faces = {name: 0 for name, _ in tools}
    empty = {name: 0 for name, _ in tools}
    loads = [load()]
    for start in range(0, len(paths), chunk):
        part = paths[start:start + chunk]
        for name, fn in tools:
            t = time.perf_counter()
            counts = fn(part)
            spent[name] += time.perf_counter() - t
            faces[name] += sum(counts)
            empty[name] += counts.count(0)
        loads.append(load())
    print(f"{number}. end to end on {label}: {len(paths)} images, chunks of {chunk}, "
          f"load average {min(loads):.1f}-{max(loads):.1f}")
    base = len(paths) / spent["face_recognition"]
    for name, _ in tools:
        rate = len(paths) / spent[name]
        print(f"   {name:38}{rate:>8.1f} images/s {1000 / rate:>8.1f} ms/image "
              f"faces {faces[name]:>5} (none in {empty[name]:>3} images)  ratio "
              f"{rate / base:>5.1f}x")
    print()


# ------------------------------------------------------------------ 5. candor index, the CLI


def index_cli(paths: list[Path], label: str, rounds: int) -> None:
    import subprocess
    import tempfile

    import face_recognition as fr

    def run_fr(part: list[Path] = paths) -> None:
        for path in part:
            image = fr.load_image_file(path)
            fr.face_encodings(image, fr.face_locations(image))

    with tempfile.TemporaryDirectory(prefix="candor-bench-") as home:
        # as installed: pip byte-compiles a package, so a user's command does not compile
        # candor's ~200 modules at every start (~0.6 s of CPU). A source checkout run with
        # PYTHONDONTWRITEBYTECODE (as these sessions are) would; the warm-up run below writes
        # the byte-code into the temporary directory, as it writes the model caches
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(CANDOR_DATA_DIR=home, PYTHONPYCACHEPREFIX=str(Path(home) / "pycache"))
        command = [sys.executable, "-m", "candor.cli", "index"]

        def run_index(collection: str) -> None:
            subprocess.run([*command, collection, *map(str, paths), "--create", "--json"],
                           env=env, check=True, stdout=subprocess.DEVNULL)

        # the data dir's model caches: a photo with a face (the embedding network) and a blank
        # one, where HOG finds nothing and the CNN detector runs (its ONNX conversion, once)
        blank = Path(home) / "blank.png"
        cv2.imwrite(str(blank), np.full((120, 160, 3), 128, np.uint8))
        subprocess.run([*command, "warm", str(paths[0]), str(blank), "--create"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        run_fr(paths[:1])  # face_recognition's models loaded outside its clock
        spent = {"face_recognition": 0.0, "candor index": 0.0}
        cpu = dict.fromkeys(spent, 0.0)
        loads = [load()]
        for i in range(rounds):
            for name, fn, arg in (("face_recognition", run_fr, paths),
                                  ("candor index", run_index, f"bench{i}")):
                t, c = time.perf_counter(), cpu_seconds()
                fn(arg)
                spent[name] += time.perf_counter() - t
                cpu[name] += cpu_seconds() - c
            loads.append(load())
    print(f"5. candor index, the CLI in a subprocess (start-up included), on {label}: "
          f"{len(paths)} images, {rounds} round(s), load average {min(loads):.1f}-{max(loads):.1f}")
    base = rounds * len(paths) / spent["face_recognition"]
    for name, seconds in spent.items():
        rate = rounds * len(paths) / seconds
        print(f"   {name:38}{rate:>8.1f} images/s {seconds / rounds:>8.2f} s per run  ratio "
              f"{rate / base:>5.1f}x  ({cpu[name] / rounds:.1f} s CPU per run)")
    print("   (on a loaded machine a process with several busy threads gets more of the CPU "
          "than a single-threaded one: read the ratio beside the load average)\n")


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the CLI runs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    global DEFAULT_DATA
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--lfw", type=int, default=500, help="LFW View 1 images (0: all 4,992)")
    ap.add_argument("--chunk", type=int, default=100, help="images per alternation")
    ap.add_argument("--repeats", type=int, default=12, help="timed calls for 1. and 2.")
    ap.add_argument("--backend", default=None, help="candor backend (default: CANDOR_BACKEND "
                                                    "or onnx)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each tool for 5.")
    ap.add_argument("--only", default="123456", help="which measurements, e.g. 34")
    args = ap.parse_args()
    DEFAULT_DATA = args.data
    try:
        import face_recognition  # noqa: F401
    except ImportError:
        print("face_recognition is not installed: pip install --no-deps face_recognition",
              file=sys.stderr)
        return 1
    from candor.face.engine import Engine
    from candor.face.imaging import sniff_format
    from candor.system import available_cores

    engine = Engine(backend=args.backend)
    print(f"candor backend {engine.backend.name}, {available_cores()} cores available, "
          f"load average {load():.1f} at start\n")
    if "1" in args.only:
        embedding_latency(engine, args.repeats)
    if "2" in args.only:
        cnn_detection(engine, max(3, args.repeats // 3))
    if "3" in args.only:
        # PIL (face_recognition) cannot read the WebP-in-.jpg sample; keep what both can read
        ids = [p for p in photos_in([args.data / "samples" / "identities"])
               if sniff_format(p.read_bytes()[:16]) in ("JPEG", "PNG")]
        end_to_end(engine, "3", "samples/identities", ids, args.chunk)
    if "4" in args.only:
        sample = lfw_view1(args.data / "lfw", args.lfw)
        label = f"LFW View 1 ({'all' if len(sample) >= 4992 else f'seeded sample of {len(sample)}'})"
        end_to_end(engine, "4", label, sample, args.chunk)
    if "5" in args.only:
        sample = lfw_view1(args.data / "lfw", args.lfw)
        label = f"LFW View 1 ({'all' if len(sample) >= 4992 else f'seeded sample of {len(sample)}'})"
        index_cli(sample, label, args.rounds)
    if "6" in args.only:
        from http_clients import http_rows  # a bench sibling (bench/ is on sys.path)

        http_rows(engine, lfw_view1(args.data / "lfw", args.lfw), args.chunk)
    print(f"load average {load():.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
