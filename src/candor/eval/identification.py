"""``candor eval identification``: 1:N search measured through the real service path.

A labelled folder tree (``<person>/<photo>``, e.g. LFW View 1) is split into a gallery and
probes, as NIST FRVT 1:N does:

- every person with at least ``min_photos`` photos is enrolled: their first ``enrolled`` photos
  (in file-name order) are indexed with IndexFaces (``ExternalImageId`` = the person), and their
  other photos are *mated* probes;
- one photo each of ``non_mated`` people outside the gallery (chosen with ``seed``) are
  *non-mated* probes: someone who is not enrolled.

Every probe is searched with SearchFacesByImage on a governed in-process service over a
temporary data dir (the gate, the policy, the ledger: exactly what a user's search goes
through). Searches name a low threshold so that each returns its full candidate list; the rates
at any threshold t are then read from those lists:

- rank-1: mated probes whose top candidate is their own person (no threshold);
- FNIR(t): mated probes whose mate is not returned at Similarity >= t (a probe with no face
  detected is a miss);
- FPIR(t): non-mated probes with any candidate at Similarity >= t (the false alarm rate).

With ``users=True`` (``--users``) each enrolled person is also a user (CreateUser, then
AssociateFaces of their indexed faces; the labels are the enrolment's ground truth, so every
face is associated whatever its match with the others) and every probe goes through
SearchUsersByImage instead: identity-level search, one template a person. The default is then
the size-aware one of a user search (N = the faces behind the users' templates,
:func:`candor.scoring.fpir.user_search_size`), read from DescribeCollection.

They are reported at the common thresholds and at the size-aware default a search without a
threshold runs with (:mod:`candor.scoring.fpir`), next to the FPIR that formula promises.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from candor.errors import CandorError
from candor.eval import datasets, metrics
from candor.scoring import fpir as fpir_mod

THRESHOLDS = (80.0, 85.0, 90.0, 95.0, 99.0)
#: searches ask for every candidate down to this Similarity
FLOOR = 50.0
COLLECTION = "eval-identification"


def split(s: datasets.ImageSet, min_photos: int, enrolled: int, non_mated: int,
          seed: int) -> tuple[dict[str, list[str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """(gallery: person -> enrolled files, mated probes, non-mated probes) as (person, file)."""
    if enrolled >= min_photos:
        raise ValueError("enrolled must be smaller than min_photos: each person needs probes")
    by_person: dict[str, list[str]] = {}
    for f, who in zip(s.files, s.identities):
        by_person.setdefault(who, []).append(f)
    gallery, mated, outside = {}, [], []
    for who in sorted(by_person):
        files = sorted(by_person[who])
        if len(files) >= min_photos:
            gallery[who] = files[:enrolled]
            mated.extend((who, f) for f in files[enrolled:])
        else:
            outside.append((who, files[0]))
    rng = random.Random(seed)
    picked = sorted(rng.sample(outside, min(non_mated, len(outside))))
    return gallery, mated, picked


def run(images: str | Path, *, min_photos: int = 5, enrolled: int = 3, non_mated: int = 500,
        seed: int = 0, thresholds=THRESHOLDS, backend: str | None = None,
        detector: str | None = None, normalised: bool | None = None,
        users: bool = False, progress: Callable[[int, int], None] | None = None) -> dict:
    """Enrol, search and measure; returns the JSON-ready summary."""
    from candor.config import Settings
    from candor.face.imaging import load_image
    from candor.governance.gate import governed
    from candor.service import Service

    started = time.perf_counter()
    s = datasets.load(images)
    gallery, mated, nonmated = split(s, min_photos, enrolled, non_mated, seed)
    if not gallery:
        raise ValueError(f"no person in {images} has {min_photos} or more photos")
    total = sum(len(v) for v in gallery.values()) + len(mated) + len(nonmated)
    done = 0
    overrides = {"normalisation": normalised} if normalised is not None else {}
    with tempfile.TemporaryDirectory(prefix="candor-ident-") as tmp:
        settings = Settings.load(**overrides)
        svc = governed(Service(data_dir=Path(tmp), backend=backend, detector=detector,
                               settings=settings))
        svc.call("CreateCollection", {"CollectionId": COLLECTION})
        not_indexed = []
        for who, files in gallery.items():
            face_ids = []
            for f in files:
                params = {"CollectionId": COLLECTION, "MaxFaces": 1, "ExternalImageId": who,
                          "Image": {"Bytes": load_image(s.root / f)}}
                r = svc.call("IndexFaces", params)
                if not r.get("FaceRecords"):
                    not_indexed.append(f)
                face_ids += [fr["Face"]["FaceId"] for fr in r.get("FaceRecords", [])]
                done += 1
                if progress:
                    progress(done, total)
            if users and face_ids:
                svc.call("CreateUser", {"CollectionId": COLLECTION, "UserId": who})
                svc.call("AssociateFaces", {"CollectionId": COLLECTION, "UserId": who,
                                            "FaceIds": face_ids, "UserMatchThreshold": 0.0})
        describe = svc.call("DescribeCollection", {"CollectionId": COLLECTION})
        size = describe["FaceCount"]
        block = describe["CandorSearchFpir"]["Users" if users else "Faces"]
        default = float(block["DefaultSearchThreshold"])
        n_searched = describe["UserCount"] if users else size

        def search(f: str) -> list[tuple[float, str]] | None:
            nonlocal done
            try:
                image = {"Bytes": load_image(s.root / f)}
                if users:
                    r = svc.call("SearchUsersByImage", {
                        "CollectionId": COLLECTION, "Image": image, "UserMatchThreshold": FLOOR,
                        "MaxUsers": max(1, n_searched)})
                    out = [(m["Similarity"], m["User"]["UserId"]) for m in r["UserMatches"]]
                else:
                    r = svc.call("SearchFacesByImage", {
                        "CollectionId": COLLECTION, "Image": image,
                        "FaceMatchThreshold": FLOOR, "MaxFaces": max(1, size)})
                    out = [(m["Similarity"], m["Face"].get("ExternalImageId"))
                           for m in r["FaceMatches"]]
            except CandorError:
                out = None      # no face found in the probe
            done += 1
            if progress:
                progress(done, total)
            return out

        mated_lists = [(who, search(f)) for who, f in mated]
        nonmated_lists = [search(f) for _, f in nonmated]
    levels = sorted({float(t) for t in thresholds} | {default})
    mate_best = np.array([max((sim for sim, p in c if p == who), default=-1.0) if c else -1.0
                          for who, c in mated_lists])
    rank1 = np.array([bool(c) and c[0][1] == who for who, c in mated_lists])
    top_nonmated = np.array([c[0][0] if c else -1.0 for c in nonmated_lists])
    rows = []
    for t in levels:
        misses = int((mate_best < t).sum())
        alarms = int((top_nonmated >= t).sum())
        rows.append({"threshold": t, "is_default": t == default,
                     "fnir": misses / len(mate_best) if len(mate_best) else None,
                     "fnir_ci": metrics.wilson(misses, len(mate_best)),
                     "misses": misses,
                     "fpir": alarms / len(top_nonmated) if len(top_nonmated) else None,
                     "fpir_ci": metrics.wilson(alarms, len(top_nonmated)),
                     "false_alarms": alarms,
                     "fpir_formula": fpir_mod.fpir(t, block["CollectionSize"])})
    return {
        "kind": "identification", "source": str(images), "photos": len(s),
        "protocol": {"min_photos": min_photos, "enrolled_per_person": enrolled,
                     "non_mated": non_mated, "seed": seed,
                     "search": "SearchUsersByImage" if users else "SearchFacesByImage"},
        "gallery_people": len(gallery), "gallery_faces": size,
        "gallery_users": describe["UserCount"], "fpir_size": block["CollectionSize"],
        "gallery_photos_not_indexed": not_indexed,
        "mated_probes": len(mated), "non_mated_probes": len(nonmated),
        "probes_without_face": {"mated": sum(c is None for _, c in mated_lists),
                                "non_mated": sum(c is None for c in nonmated_lists)},
        "rank1": float(rank1.mean()) if len(rank1) else None,
        "rank1_ci": metrics.wilson(int(rank1.sum()), len(rank1)),
        "default_threshold": default, "target_fpir": fpir_mod.TARGET_FPIR,
        "at_default": next(r for r in rows if r["is_default"]),
        "thresholds": rows,
        "settings": {"model_version": describe["FaceModelVersion"],
                     "backend": getattr(svc, "backend_name", backend) or "default",
                     "detector": svc.detector, "scoring": svc.scoring.name},
        "seconds": round(time.perf_counter() - started, 1),
    }
