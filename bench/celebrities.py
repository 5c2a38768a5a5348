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
core); the gallery is a real store, recognised by the code RecognizeCelebrities runs
(:mod:`candor.eval.celebrities`, which ``candor celebrities evaluate`` runs on any folders).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections import defaultdict
from pathlib import Path

from candor.eval.celebrities import embeddings, measure

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
    vectors = embeddings(paths, data_dir=args.cache)
    missing = sum(v is None for v in vectors.values())
    print(f"photos: {len(paths)}, no face detected: {missing}; "
          f"split: {'development' if args.dev else 'reported'}")
    for name, least in (("gallery3", 3), ("gallery2", 2)):
        people = {n: p for n, p in by_person.items() if len(p) >= least}
        held = {n: (p[0] if args.dev else p[-1]) for n, p in people.items()}
        r = measure(people, held, outsiders, vectors)
        print(f"{name}: people {r['people']}, right person named {r['right']:.4f}, "
              f"outsiders named {r['outsiders_named']:.4f} ({r['outsiders']} outsiders), "
              f"threshold {r['threshold']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
