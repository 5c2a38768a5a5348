"""Celebrity recognition on LFW View 1: a gallery of the people with several photos, one photo
each held out, and 500 people outside the gallery.

    python bench/celebrities.py [--data ../shared/data/faces] [--cache DIR] [--dev]

Protocol (docs/celebrities.md). People are grouped by how many photos of them LFW View 1 has.

- ``gallery3``: the 404 people with at least three photos. Each person's last photo (by file
  name) is held out, the others go into the gallery. Reported: the share of held-out photos
  for which recognition names the right person, and the share of the outsiders' photos for
  which it names anyone.
- ``gallery2``: the same for the 1,165 people with at least two photos.
- Outsiders: the people with one photo, shuffled with seed 14; the first 500 are reported.

The method and thresholds (candor.service.celebrities) were chosen on the *development* split,
which this script prints only with ``--dev``: each person's first photo held out instead, and
the next 500 outsiders. Each photo's face is the one nearest the centre (LFW is centred on the
labelled person), embedded through the evaluation cache (``candor.eval.embeddings``, every
core); the gallery is a real store (``Store.add_celebrity``), recognised by the code
RecognizeCelebrities runs (``recognise``).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from candor.eval.embeddings import embed_images
from candor.face.engine import FACE_MODEL_VERSION
from candor.scoring.similarity import Scoring
from candor.service.celebrities import gallery_threshold, recognise
from candor.store import Store

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", Path(__file__).parents[1] / ".." / "shared"
                                   / "data" / "faces"))
OUTSIDERS = 500
SEED = 14


def split(lfw: Path, dev: bool):
    """(photos by person, outsiders' photos) for the reported split or the development one."""
    by_person: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(lfw.glob("*/*.jpg")):
        by_person[path.parent.name].append(path)
    singles = sorted(n for n, p in by_person.items() if len(p) == 1)
    random.Random(SEED).shuffle(singles)
    outsiders = singles[OUTSIDERS:2 * OUTSIDERS] if dev else singles[:OUTSIDERS]
    return by_person, [by_person[n][0] for n in outsiders]


def measure(name: str, people: list[str], by_person, outsiders, vectors, dev: bool,
            scoring: Scoring) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        held = {}
        for person in people:
            photos = by_person[person]
            held[person] = photos[0] if dev else photos[-1]
            gallery = [p for p in photos if p != held[person] and vectors.get(p) is not None]
            if gallery:
                store.add_celebrity(person, [], None, [vectors[p] for p in gallery],
                                    [None] * len(gallery), FACE_MODEL_VERSION)
        gallery = store.gallery()
        rows = store.celebrities_by_key(gallery.keys)
        names = [rows[int(k)].name for k in gallery.keys]

        def named(paths):
            found = [p for p in paths if vectors.get(p) is not None]
            out = {p: None for p in paths}
            if found:
                for p, m in zip(found, recognise(gallery, np.stack([vectors[p] for p in found]),
                                                 scoring)):
                    out[p] = names[m[0]] if m is not None else None
            return out

        held_names = named([held[p] for p in people])
        right = sum(held_names[held[p]] == p for p in people)
        strangers = named(outsiders)
        wrongly = sum(v is not None for v in strangers.values())
        store.close()
    return {"name": name, "people": len(gallery), "right": right / len(people),
            "outsiders_named": wrongly / len(outsiders), "threshold": gallery_threshold(len(gallery))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=None,
                    help="data dir holding the evaluation embedding cache [default: candor's]")
    ap.add_argument("--dev", action="store_true", help="the development split (not reported)")
    args = ap.parse_args()
    lfw = args.data / "lfw"
    by_person, outsiders = split(lfw, args.dev)
    paths = sorted({p for ps in by_person.values() for p in ps})
    if not paths:
        ap.error(f"no LFW photos under {lfw} (--data or CANDOR_TEST_DATA)")
    emb = embed_images(paths, data_dir=args.cache)
    vectors = {p: (emb.embeddings[i] if emb.found[i] else None) for i, p in enumerate(paths)}
    print(f"photos: {len(paths)}, no face detected: {emb.missing}, from the cache: {emb.cached}, "
          f"embedding {emb.seconds:.1f} s; split: {'development' if args.dev else 'reported'}")
    scoring = Scoring()
    for name, least in (("gallery3", 3), ("gallery2", 2)):
        people = sorted(n for n, p in by_person.items() if len(p) >= least)
        r = measure(name, people, by_person, outsiders, vectors, args.dev, scoring)
        print(f"{r['name']}: people {r['people']}, right person named {r['right']:.4f}, "
              f"outsiders named {r['outsiders_named']:.4f} ({len(outsiders)} outsiders), "
              f"threshold {r['threshold']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
