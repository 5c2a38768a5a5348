"""Every gallery-matching method tried for celebrity recognition, measured the same way
(``python bench/celebrities.py --methods``; the table is in docs/celebrities.md).

Each method maps a query face to (best person, score). For each method the threshold is chosen
on the **development split** alone (each person's *first* photo held out, the gallery the rest;
the 1,430 people with one photo that are not the reported outsiders): the lowest score that
names at most 1 % of those outsiders. The method is then measured at that threshold on the
**reported split** (each person's *last* photo held out; the 500 reported outsiders), which
played no part in choosing anything. No reported held-out photo is a development query and no
reported outsider is a development outsider; the people are the same, and the development
gallery holds the reported held-out photos (so both galleries have the same number of photos
per person, which the thresholds depend on).

Scores are the service's (:func:`candor.scoring.similarity.scores`, normalised) unless a
method says otherwise; the service's own method is ``candor now``, computed here by
:func:`candor.service.celebrities.open_set_scores` itself.

:func:`fit_thresholds` is how the service's thresholds were chosen: on the development split,
the MatchConfidence that names at most 1 % of the outsiders, for galleries of several sizes
(random subsets of the development gallery of the 1,165 people with two photos or more).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from candor.scoring.similarity import Scoring, scores
from candor.service.celebrities import open_set_scores
from candor.store import Gallery

#: the share of outsiders a threshold may name, on the development split
TARGET = 0.01


@dataclass
class Split:
    """A gallery (faces, their owners, unit-mean templates), held-out queries and outsiders."""

    faces: np.ndarray
    owners: np.ndarray
    queries: np.ndarray
    truth: np.ndarray
    outsiders: np.ndarray

    @property
    def people(self) -> int:
        return int(self.owners.max()) + 1

    @property
    def templates(self) -> np.ndarray:
        t = np.stack([self.faces[self.owners == i].mean(0) for i in range(self.people)])
        return t / np.linalg.norm(t, axis=1, keepdims=True)


def make_split(by_person: dict, held: dict, outsiders: list, vectors: dict) -> Split:
    names = sorted(by_person)
    faces, owners = [], []
    for i, name in enumerate(names):
        for p in by_person[name]:
            if p != held.get(name) and vectors.get(p) is not None:
                faces.append(vectors[p])
                owners.append(i)
    asked = [n for n in names if n in held and vectors.get(held[n]) is not None]
    return Split(np.stack(faces), np.array(owners), np.stack([vectors[held[n]] for n in asked]),
                 np.array([names.index(n) for n in asked]),
                 np.stack([vectors[p] for p in outsiders if vectors.get(p) is not None]))


# -- per-person scores -----------------------------------------------------------------------
def per_face(s: Split, x: np.ndarray, normalised: bool = True) -> np.ndarray:
    return scores(x, s.faces, normalised)


def nearest(s: Split, x: np.ndarray, normalised: bool = True) -> np.ndarray:
    f = per_face(s, x, normalised)
    out = np.full((len(x), s.people), -np.inf)
    np.maximum.at(out.T, s.owners, f.T)
    return out


def reduce_faces(s: Split, x: np.ndarray, how: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    f = per_face(s, x)
    return np.stack([how(f[:, s.owners == i]) for i in range(s.people)], axis=1)


def template(s: Split, x: np.ndarray, normalised: bool = True) -> np.ndarray:
    return scores(x, s.templates, normalised)


def top2(f: np.ndarray) -> np.ndarray:
    return -np.sort(-f, axis=1)[:, :2].mean(1)


def softmax_mean(f: np.ndarray, t: float = 0.02) -> np.ndarray:
    return t * np.log(np.exp((f - f.max(1, keepdims=True)) / t).mean(1)) + f.max(1)


# -- from per-person scores to one score per query -------------------------------------------
def open_set(per_person: np.ndarray, margin: float = 0.0, z: float = 0.0, crowd: float = 0.0,
             tnorm: int = 0) -> tuple[np.ndarray, np.ndarray]:
    best = per_person.argmax(1)
    ranked = -np.sort(-per_person, axis=1)
    top = ranked[:, 0]
    if tnorm:
        cohort = ranked[:, 1:1 + tnorm]
        return best, (top - cohort.mean(1)) / (cohort.std(1) + 1e-6)
    spread = per_person.std(1)
    zz = (top - per_person.mean(1)) / np.where(spread > 0, spread, 1.0)
    return best, (top + margin * (top - ranked[:, 1]) + z * 0.01 * zz
                  + crowd * (top - per_person.mean(1)))


def max_template(s: Split, x: np.ndarray, normalised: bool = True) -> np.ndarray:
    return np.maximum(template(s, x, normalised), nearest(s, x, normalised))


def _person_shift(s: Split, per_person: np.ndarray, kind: str, weight: float) -> np.ndarray:
    """Gallery-side corrections, computed from the gallery alone."""
    if kind == "znorm":  # each person's mean score against everyone else's photos
        g = scores(s.templates, s.faces)
        g = np.where(s.owners[None, :] == np.arange(s.people)[:, None], np.nan, g)
        value = np.nanmean(g, 1)
    elif kind == "photos":  # more photos: more chances for a stranger's max
        value = np.log(np.bincount(s.owners, minlength=s.people))
    elif kind == "impostor-max":  # the best score of another person's photo to the template
        g = scores(s.templates, s.faces)
        g = np.where(s.owners[None, :] == np.arange(s.people)[:, None], -np.inf, g)
        value = -np.sort(-g, 1)[:, :20].mean(1)
    else:
        raise ValueError(kind)
    return per_person - weight * (value - value.mean())[None, :]


def wccn(s: Split, x: np.ndarray, lam: float = 2.0) -> np.ndarray:
    """Within-class covariance normalisation learned from the gallery's own people (raw
    cosines in the whitened space; the calibrated table does not apply)."""
    c = np.zeros((s.faces.shape[1],) * 2)
    n = 0
    for i in range(s.people):
        f = s.faces[s.owners == i]
        if len(f) >= 2:
            d = f - f.mean(0)
            c += d.T @ d
            n += len(f) - 1
    c = c / max(n, 1)
    c = c / np.trace(c) * len(c)
    w, v = np.linalg.eigh(c + lam * np.eye(len(c)))
    m = v @ np.diag(w ** -0.5) @ v.T

    def tr(a: np.ndarray) -> np.ndarray:
        b = a @ m
        return b / np.linalg.norm(b, axis=1, keepdims=True)

    white = Split(tr(s.faces), s.owners, s.queries, s.truth, s.outsiders)
    return max_template(white, tr(x), normalised=False)


def candor(s: Split, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The service's own code (candor.service.celebrities.open_set_scores)."""
    gallery = Gallery(0, np.arange(s.people), s.templates, s.faces, s.owners)
    return open_set_scores(gallery, x, Scoring())


Method = Callable[[Split, np.ndarray], tuple[np.ndarray, np.ndarray]]
METHODS: list[tuple[str, Method]] = [
    ("nearest photo", lambda s, x: open_set(nearest(s, x))),
    ("nearest photo, raw cosine (no normalisation)", lambda s, x: open_set(nearest(s, x, False))),
    ("template (unit mean of the photos)", lambda s, x: open_set(template(s, x))),
    ("mean score over the person's photos", lambda s, x: open_set(reduce_faces(s, x, lambda f: f.mean(1)))),
    ("mean of the top-2 photos", lambda s, x: open_set(reduce_faces(s, x, top2))),
    ("soft maximum over photos (t = 0.02)", lambda s, x: open_set(reduce_faces(s, x, softmax_mean))),
    ("better of template and nearest photo", lambda s, x: open_set(max_template(s, x))),
    ("half template + half nearest photo",
     lambda s, x: open_set(0.5 * template(s, x) + 0.5 * nearest(s, x))),
    ("nearest photo + margin 0.5", lambda s, x: open_set(nearest(s, x), margin=0.5)),
    ("template + margin 0.75", lambda s, x: open_set(template(s, x), margin=0.75)),
    ("top-2 photos + margin 0.5", lambda s, x: open_set(reduce_faces(s, x, top2), margin=0.5)),
    ("soft maximum + margin 0.5",
     lambda s, x: open_set(reduce_faces(s, x, softmax_mean), margin=0.5)),
    ("half template + half nearest + margin 0.5",
     lambda s, x: open_set(0.5 * template(s, x) + 0.5 * nearest(s, x), margin=0.5)),
    ("better of template/nearest + margin 0.5", lambda s, x: open_set(max_template(s, x), margin=0.5)),
    ("better of template/nearest + margin 1.0", lambda s, x: open_set(max_template(s, x), margin=1.0)),
    ("open-set (candor until now): better of template/nearest + margin 0.75 + z 0.005",
     lambda s, x: open_set(max_template(s, x), margin=0.75, z=0.5)),
    ("  same, raw cosine (no normalisation)",
     lambda s, x: open_set(max_template(s, x, False), margin=0.75, z=0.5)),
    ("  + query crowding 0.25 x (top - mean)",
     lambda s, x: open_set(max_template(s, x), margin=0.75, z=0.5, crowd=0.25)),
    ("  + person Z-norm (gallery cohort mean)",
     lambda s, x: open_set(_person_shift(s, max_template(s, x), "znorm", 0.5), margin=0.75, z=0.5)),
    ("  - 0.005 x log(photos of the person)",
     lambda s, x: open_set(_person_shift(s, max_template(s, x), "photos", 0.005), margin=0.75,
                           z=0.5)),
    ("  - 0.002 x log(photos of the person)",
     lambda s, x: open_set(_person_shift(s, max_template(s, x), "photos", 0.002), margin=0.75,
                           z=0.5)),
    ("candor now: better of template/nearest - 0.005 x log(photos) + margin 0.5 + z 0.005",
     candor),
    ("  - 0.25 x the person's top-20 impostor photos",
     lambda s, x: open_set(_person_shift(s, max_template(s, x), "impostor-max", 0.25),
                           margin=0.75, z=0.5)),
    ("T-norm over the next 50 people", lambda s, x: open_set(max_template(s, x), tnorm=50)),
    ("WCCN learned on the gallery, raw cosine + margin 0.5",
     lambda s, x: open_set(wccn(s, x), margin=0.5)),
]


def threshold_for(outsider_scores: np.ndarray, target: float = TARGET) -> float:
    """The lowest threshold naming at most ``target`` of the outsiders (ties excluded)."""
    k = int(np.floor(target * len(outsider_scores)))
    ranked = np.sort(outsider_scores)[::-1]
    return float(np.nextafter(ranked[k], np.inf)) if k < len(ranked) else -np.inf


def measure(method: Method, split: Split, threshold: float) -> tuple[float, float, float]:
    """(right person named, outsiders named, rank-1) at ``threshold``."""
    best, score = method(split, split.queries)
    _, out = method(split, split.outsiders)
    right = float(np.mean((best == split.truth) & (score >= threshold)))
    return right, float(np.mean(out >= threshold)), float(np.mean(best == split.truth))


def compare(dev: Split, reported: Split) -> list[dict]:
    """Every method: threshold chosen on ``dev``, measured on both."""
    rows = []
    for name, method in METHODS:
        _, out = method(dev, dev.outsiders)
        threshold = threshold_for(out)
        d = measure(method, dev, threshold)
        r = measure(method, reported, threshold)
        rows.append({"method": name, "threshold": threshold, "dev_right": d[0],
                     "dev_outsiders": d[1], "right": r[0], "outsiders": r[1], "rank1": r[2]})
    return rows


def fit_thresholds(dev: Split, sizes=(100, 200, 400, 800), repeats: int = 5,
                   seed: int = 14) -> list[tuple[int, float]]:
    """(gallery size, mean MatchConfidence naming <= 1 % of the outsiders) on ``dev``."""
    scoring = Scoring()
    rng = np.random.default_rng(seed)
    out = []
    for size in [*sizes, dev.people]:
        found = []
        for _ in range(repeats if size < dev.people else 1):
            keep = np.sort(rng.choice(dev.people, size, replace=False))
            position = {int(k): i for i, k in enumerate(keep)}
            chosen = np.isin(dev.owners, keep)
            sub = Split(dev.faces[chosen], np.array([position[int(o)] for o in dev.owners[chosen]]),
                        dev.queries, dev.truth, dev.outsiders)
            _, score = candor(sub, dev.outsiders)
            found.append(float(scoring.from_score(threshold_for(score))))
        out.append((size, float(np.mean(found))))
    return out
