"""Celebrity recognition on LFW View 1: a gallery of the people with several photos, one photo
each held out, and 500 people outside the gallery.

    python bench/celebrities.py [--data ../shared/data/faces] [--cache DIR] [--dev] [--methods]

Protocol (docs/celebrities.md). People are grouped by how many photos of them LFW View 1 has.

- ``gallery3``: the 404 people with at least three photos. Each person's last photo (by file
  name) is held out, the others go into the gallery. Reported: the share of held-out photos
  for which recognition names the right person, and the share of the outsiders' photos for
  which it names anyone.
- ``gallery2``: the same for the 1,165 people with at least two photos.
- Outsiders: the people with one photo, shuffled with seed 14; the first 500 are reported.

The method and thresholds (candor.service.celebrities) were chosen on the *development* split,
which this script prints only with ``--dev``: each person's first photo held out instead, and
the other 1,430 people with one photo as outsiders (none of the reported 500). ``--methods``
prints every method tried (bench/celebrity_methods.py), each with its threshold chosen on the
development split and measured on the reported one. Each photo's face is the one nearest the
centre (LFW is centred on the labelled person), embedded through the evaluation cache
(``candor.eval.embeddings``, every core); the gallery is a real store, recognised by the code
RecognizeCelebrities runs (:mod:`candor.eval.celebrities`, which ``candor celebrities
evaluate`` runs on any folders).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections import defaultdict
from pathlib import Path

from candor.eval.celebrities import embeddings, gallery_embeddings, measure
from candor.service.celebrities import GALLERY_VIEWS, VIEWS_WEIGHT

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
    outsiders = singles[OUTSIDERS:] if dev else singles[:OUTSIDERS]
    return by_person, [by_person[n][0] for n in outsiders]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=None,
                    help="data dir holding the evaluation embedding cache [default: candor's]")
    ap.add_argument("--dev", action="store_true", help="the development split (not reported)")
    ap.add_argument("--fit-thresholds", action="store_true",
                    help="the MatchConfidence naming <= 1 %% of the development outsiders, by "
                    "gallery size (how the service's thresholds were chosen)")
    ap.add_argument("--json", type=Path, default=None,
                    help="also write the figures to this JSON file (bench/celebrities.json)")
    ap.add_argument("--methods", action="store_true",
                    help="every method tried: threshold chosen on the development split, "
                    "measured on the reported one")
    args = ap.parse_args()
    lfw = args.data / "lfw"
    by_person, outsiders = split(lfw, args.dev)
    paths = sorted({p for ps in by_person.values() for p in ps})
    if not paths:
        ap.error(f"no LFW photos under {lfw} (--data or CANDOR_TEST_DATA)")
    vectors = embeddings(paths, data_dir=args.cache)
    # the gallery's photos as `candor celebrities import` stores them (with their views)
    stored = gallery_embeddings(sorted(p for ps in by_person.values() if len(ps) >= 2 for p in ps),
                                data_dir=args.cache)
    missing = sum(v is None for v in vectors.values())
    print(f"photos: {len(paths)}, no face detected: {missing}; "
          f"split: {'development' if args.dev else 'reported'}")
    if args.methods:
        return methods(lfw, vectors)
    if args.fit_thresholds:
        return fit(lfw, vectors, stored)
    report = {"split": "development" if args.dev else "reported", "photos": len(paths),
              "gallery_views": list(GALLERY_VIEWS), "views_weight": VIEWS_WEIGHT,
              "load_average": os.getloadavg()[0]}
    for name, least in (("gallery3", 3), ("gallery2", 2)):
        people = {n: p for n, p in by_person.items() if len(p) >= least}
        held = {n: (p[0] if args.dev else p[-1]) for n, p in people.items()}
        r = measure(people, held, outsiders, vectors, gallery_vectors=stored)
        report[name] = r
        print(f"{name}: people {r['people']}, right person named {r['right']:.4f}, "
              f"outsiders named {r['outsiders_named']:.4f} ({r['outsiders']} outsiders), "
              f"threshold {r['threshold']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def fit(lfw: Path, vectors: dict, stored: dict) -> int:
    """The development split's thresholds by gallery size (candor.service.celebrities), the
    gallery's photos embedded as import stores them."""
    from celebrity_methods import Split, candor, fit_thresholds, make_split, threshold_for

    from candor.scoring.similarity import Scoring

    by_person, outsiders = split(lfw, dev=True)
    for least in (3, 2):
        people = {n: p for n, p in by_person.items() if len(p) >= least}
        held = {n: p[0] for n, p in people.items()}
        gallery = make_split(people, held, outsiders, stored)
        asked = make_split(people, held, outsiders, vectors)
        dev = Split(gallery.faces, gallery.owners, asked.queries, asked.truth, asked.outsiders)
        if least == 3:
            _, score = candor(dev, dev.outsiders)
            print(f"gallery3 (development): {dev.people} people, <= 1 % of outsiders from "
                  f"MatchConfidence {float(Scoring().from_score(threshold_for(score))):.3f}")
            continue
        for size, threshold in fit_thresholds(dev):
            print(f"gallery of {size} (development, two photos or more): <= 1 % of outsiders "
                  f"from MatchConfidence {threshold:.3f}")
    return 0


def methods(lfw: Path, vectors: dict) -> int:
    """A markdown table per gallery: every method of bench/celebrity_methods.py."""
    from celebrity_methods import compare, make_split

    splits = {}
    for dev in (True, False):
        by_person, outsiders = split(lfw, dev)
        splits[dev] = (by_person, outsiders)
    for name, least in (("gallery3", 3), ("gallery2", 2)):
        made = []
        for dev in (True, False):
            by_person, outsiders = splits[dev]
            people = {n: p for n, p in by_person.items() if len(p) >= least}
            held = {n: (p[0] if dev else p[-1]) for n, p in people.items()}
            made.append(make_split(people, held, outsiders, vectors))
        print(f"\n{name}: {made[1].people} people; threshold chosen on the development split "
              f"(<= 1 % of {len(made[0].outsiders)} outsiders), measured on the reported split "
              f"({len(made[1].outsiders)} outsiders)\n")
        print("| method | development: right | outsiders | reported: right | outsiders | rank-1 |")
        print("|---|---|---|---|---|---|")
        for r in compare(made[0], made[1]):
            print(f"| {r['method']} | {r['dev_right']:.1%} | {r['dev_outsiders']:.1%} | "
                  f"**{r['right']:.1%}** | {r['outsiders']:.1%} | {r['rank1']:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
