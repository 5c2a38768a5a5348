"""Every face of a group photo identified at once (SearchFacesInImage) against a 100,000-face
collection, compared in the same run with what it costs otherwise.

    python bench/identify.py [--faces 100000] [--repeat 5] [--photo PATH]

The photo is a 7-face group (by default a 4+3 grid of seven different people of
``samples/identities``, so that every detector finds all seven; ``--photo`` takes another).
The collection holds the real embeddings of ``samples/identities`` plus synthetic faces
(real embeddings + noise, unit length) up to ``--faces``, in a real store (SQLite + the exact
FAISS index the service uses). Medians of ``--repeat`` runs, after one warm-up, of:

- ``detect``: decode, detection and landmarks, as SearchFacesInImage does them;
- ``embed``: one batched embedding of every face found;
- ``identify``: SearchFacesInImage end to end (``Service.call``, validation included);
- ``per_face``: the way to do it with Rekognition's own operations: DetectFaces once, then
  SearchFacesByImage on a crop around each face.

The claim in docs/identify.md is ``identify / (detect + embed)`` close to 1 (the searches of
100,000 faces add little) and ``per_face / identify`` the speed-up.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", Path(__file__).parents[1] / ".." / "shared"
                                   / "data" / "faces"))


def pictures(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def group_photo(engine, identities: Path, people: int = 7, side: int = 240) -> bytes:
    """A JPEG grid of one photo each of ``people`` different people (the first photo of each
    folder in which the detector finds exactly one face at that size)."""
    tiles = []
    for folder in sorted(p for p in identities.iterdir() if p.is_dir()):
        img = PILImage.open(pictures(folder)[0]).convert("RGB")
        img.thumbnail((side, side))
        if len(engine.analyse(_jpeg(img), embed=False)[1]) == 1:
            tiles.append(img)
        if len(tiles) == people:
            break
    cols = 4
    grid = PILImage.new("RGB", (cols * side, ((people + cols - 1) // cols) * side), "white")
    for i, img in enumerate(tiles):
        grid.paste(img, ((i % cols) * side, (i // cols) * side))
    return _jpeg(grid)


def _jpeg(img) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return out.getvalue()


def crop(data: bytes, box: dict, margin: float = 0.6) -> bytes:
    img = PILImage.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    x0, y0 = box["Left"] * w, box["Top"] * h
    bw, bh = box["Width"] * w, box["Height"] * h
    region = (max(0, x0 - margin * bw), max(0, y0 - margin * bh),
              min(w, x0 + (1 + margin) * bw), min(h, y0 + (1 + margin) * bh))
    out = io.BytesIO()
    img.crop(tuple(int(v) for v in region)).save(out, "JPEG", quality=92)
    return out.getvalue()


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def build(store, engine, identities: Path, faces: int) -> None:
    from candor.face.engine import FACE_MODEL_VERSION
    from candor.face.pipeline import analyse_many, largest_face

    photos = [p for d in sorted(identities.iterdir()) if d.is_dir() for p in pictures(d)]
    real = [(p, item.faces[0].embedding) for p, item in
            zip(photos, analyse_many(engine, photos, select=largest_face))
            if item.error is None and item.faces]
    store.create_collection("bench", FACE_MODEL_VERSION)
    box = {"Width": 0.3, "Height": 0.3, "Left": 0.3, "Top": 0.3}

    def row(vector, external):
        return {"embedding": vector, "bbox": box, "confidence": 99.0, "external_image_id": external,
                "image_id": "00000000-0000-0000-0000-000000000000",
                "model_version": FACE_MODEL_VERSION}

    store.add_faces("bench", [row(v, p.parent.name) for p, v in real])
    # synthetic people as bench/search.py makes them: look-alikes of the real people (centres
    # about 0.5 away), five faces each (about 0.35 apart)
    seeds = np.stack([v for _, v in real])
    rng = np.random.default_rng(7)
    left = faces - len(real)
    while left > 0:
        n = min(10_000, left)
        centres = unit(seeds[rng.integers(0, len(seeds), -(-n // 5))]
                       + rng.normal(0, 0.045, (-(-n // 5), seeds.shape[1])))
        v = unit(centres[np.arange(n) // 5] + rng.normal(0, 0.022, (n, seeds.shape[1])))
        store.add_faces("bench", [row(x, None) for x in v])
        left -= n


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--photo", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from candor.face.imaging import load_image
    from candor.service import Service
    from candor.service.common import store_of

    identities = args.data / "samples" / "identities"
    with tempfile.TemporaryDirectory(prefix="candor-bench-identify-") as tmp:
        service = Service(tmp)
        data = args.photo.read_bytes() if args.photo else group_photo(service.engine, identities)
        store = store_of(service)
        t = time.perf_counter()
        build(store, service.engine, identities, args.faces)
        store.face_index(store.collection("bench").id)
        setup = time.perf_counter() - t
        engine = service.engine
        image = load_image(data)
        _, found = engine.analyse(image, embed=False)
        n = len(found)

        def detect():
            return engine.analyse(load_image(data), attributes=["DEFAULT"], embed=False)

        def embed():
            engine.embed(image, found)

        def identify():
            return service.call("SearchFacesInImage", {"CollectionId": "bench",
                                                       "Image": {"Bytes": data}})

        boxes = [f["BoundingBox"] for f in service.call("DetectFaces", {
            "Image": {"Bytes": data}})["FaceDetails"]]
        crops = [crop(data, b) for b in boxes]

        def per_face():
            service.call("DetectFaces", {"Image": {"Bytes": data}})
            for c in crops:
                try:
                    service.call("SearchFacesByImage", {"CollectionId": "bench",
                                                        "Image": {"Bytes": c}})
                except Exception:  # a crop whose face the detector misses: still paid for
                    pass

        named = sum(bool(f["FaceMatches"]) for f in identify()["SearchedFaces"])
        r = {"faces_in_photo": n, "named": named, "collection_faces": args.faces,
             "setup_s": round(setup, 1), "detect_s": timed(detect, args.repeat),
             "embed_s": timed(embed, args.repeat), "identify_s": timed(identify, args.repeat),
             "per_face_s": timed(per_face, args.repeat)}
        store.close()
    r["identify_over_detect_plus_embed"] = r["identify_s"] / (r["detect_s"] + r["embed_s"])
    r["per_face_over_identify"] = r["per_face_s"] / r["identify_s"]
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{n} faces in the photo ({named} named), {args.faces} faces in the collection "
          f"(built in {setup:.0f} s)")
    print(f"detect {r['detect_s']*1000:.0f} ms, embed (one batch) {r['embed_s']*1000:.0f} ms, "
          f"SearchFacesInImage {r['identify_s']*1000:.0f} ms, DetectFaces + SearchFacesByImage "
          f"per face {r['per_face_s']*1000:.0f} ms")
    print(f"SearchFacesInImage / (detect + embed): {r['identify_over_detect_plus_embed']:.2f}")
    print(f"per-face searches / SearchFacesInImage: {r['per_face_over_identify']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
