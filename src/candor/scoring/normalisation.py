"""Fair Score Normalization: unsupervised per-cluster score offsets (Terhörst et al. 2020).

dlib's face embedding, like most, does not spread every population equally over its space:
faces that the training data saw less of sit closer together, so two *different* people from
such a population get higher cosines, and one global threshold falsely matches them far more
often (on FairFace, at face_recognition's default distance 0.6: East Asian faces 46%, White
faces 1.4%; see docs/fairness.md). Fair Score Normalization repairs the threshold locally,
without knowing anyone's demographic group:

1. cluster a reference population's embeddings with k-means (no labels of any kind);
2. for each cluster c, find the threshold ``thr_c`` at which the target false match rate is
   reached among the impostor pairs that involve a face of c, and the same global threshold
   ``thr_G`` over all impostor pairs;
3. score a comparison of faces i and j as ``cos(i, j) - (Δ_c(i) + Δ_c(j)) / 2`` where
   ``Δ_c = thr_c - thr_G``: a face from a crowded region has its scores lowered by as much as
   its region's threshold is raised, so every region's impostors cross a given threshold about
   equally often.

Identity labels are needed only to know which fitting pairs are impostors (different people);
demographic labels are never used to fit or apply it, only to evaluate it. The fitted parameters
(centroids and one offset per cluster) ship as ``candor/data/normalisation-v1.npz`` with a
provenance file, produced by ``candor eval fit-normalisation``; :func:`shipped` loads them once.
Scores become Similarity only in :mod:`candor.scoring.similarity`, which applies this module.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

#: the parameters candor ships and applies by default
SHIPPED = "normalisation-v1"


@dataclass(frozen=True)
class Normalisation:
    """Cluster centroids (unit rows) and each cluster's score offset (added to the cosine once
    per face: ``-Δ_c / 2``)."""

    name: str
    centroids: np.ndarray  # (k, D) float32, unit rows
    offsets: np.ndarray  # (k,) float32: -(thr_c - thr_G) / 2
    global_threshold: float
    target_fmr: float
    cluster_thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    cluster_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def k(self) -> int:
        return len(self.centroids)

    def assign(self, embeddings: np.ndarray) -> np.ndarray:
        """The nearest centroid (largest inner product) of each unit embedding row."""
        e = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if len(e) == 0:
            return np.zeros(0, np.int64)
        return np.argmax(e @ self.centroids.T, axis=1)

    def face_offsets(self, embeddings: np.ndarray) -> np.ndarray:
        """Each face's share of the score shift (float64, one per row)."""
        return self.offsets[self.assign(embeddings)].astype(np.float64)

    def adjust(self, cosines: np.ndarray, offsets_a: np.ndarray, offsets_b: np.ndarray) -> np.ndarray:
        """Normalised scores for an (N, M) block of cosines between faces with these offsets."""
        cos = np.asarray(cosines, dtype=np.float64)
        return cos + np.asarray(offsets_a, np.float64)[:, None] + np.asarray(offsets_b, np.float64)[None, :]

    def scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Normalised scores between unit embeddings ``a`` (N, D) and ``b`` (M, D): (N, M)."""
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        return self.adjust(a @ b.T, self.face_offsets(a), self.face_offsets(b))

    # -- files -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, provenance: dict | None = None) -> None:
        """The parameters as ``path`` (.npz) and, if given, ``provenance`` beside it (.json)."""
        path = Path(path)
        np.savez_compressed(
            path, name=np.array(self.name), centroids=self.centroids.astype(np.float32),
            offsets=self.offsets.astype(np.float32),
            global_threshold=np.array(self.global_threshold, np.float64),
            target_fmr=np.array(self.target_fmr, np.float64),
            cluster_thresholds=self.cluster_thresholds.astype(np.float32),
            cluster_sizes=self.cluster_sizes.astype(np.int64))
        if provenance is not None:
            path.with_suffix(".json").write_text(json.dumps(provenance, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Normalisation:
        with np.load(path, allow_pickle=False) as d:
            return cls(name=str(d["name"]), centroids=d["centroids"].astype(np.float32),
                       offsets=d["offsets"].astype(np.float32),
                       global_threshold=float(d["global_threshold"]),
                       target_fmr=float(d["target_fmr"]),
                       cluster_thresholds=d["cluster_thresholds"].astype(np.float32),
                       cluster_sizes=d["cluster_sizes"].astype(np.int64))


@lru_cache(maxsize=1)
def shipped() -> Normalisation:
    """The parameters candor ships (read once per process)."""
    ref = resources.files("candor") / "data" / f"{SHIPPED}.npz"
    with resources.as_file(ref) as path:
        return Normalisation.load(path)


def shipped_provenance() -> dict:
    """How the shipped parameters were made: data, command, settings, date."""
    ref = resources.files("candor") / "data" / f"{SHIPPED}.json"
    return json.loads(ref.read_text())



# ----------------------------------------------------------------------------- fitting


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 100) -> np.ndarray:
    """Spherical k-means (cosine) with k-means++ seeding: (k, D) unit centroids, deterministic
    for a given seed. Rows of ``x`` must be unit vectors."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of embeddings ({n}), got {k}")
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(n)]]
    dist = np.maximum(0.0, 2.0 - 2.0 * x @ centres[0])
    for _ in range(1, k):
        total = dist.sum()
        i = int(rng.choice(n, p=dist / total)) if total > 0 else int(rng.integers(n))
        centres.append(x[i])
        dist = np.minimum(dist, np.maximum(0.0, 2.0 - 2.0 * x @ x[i]))
    c = np.stack(centres)
    labels = None
    for _ in range(iterations):
        new = np.argmax(x @ c.T, axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        sums = np.zeros_like(c)
        np.add.at(sums, labels, x)
        counts = np.bincount(labels, minlength=k)
        empty = counts == 0
        if empty.any():  # re-seed an empty cluster at the point worst served by its centre
            worst = np.argsort(np.max(x @ c.T, axis=1))[: int(empty.sum())]
            sums[empty] = x[worst]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        c = sums / np.where(norms == 0, 1, norms)
    return c.astype(np.float32)


def threshold_at_fmr(impostor_scores: np.ndarray, fmr: float) -> float:
    """The score above which a fraction ``fmr`` of impostor scores lie (linear interpolation
    between order statistics)."""
    s = np.asarray(impostor_scores, dtype=np.float64)
    if len(s) == 0:
        return math.nan
    return float(np.quantile(s, 1.0 - fmr))


def fit(embeddings: np.ndarray, identities: np.ndarray, k: int = 100, target_fmr: float = 1e-2,
        neighbours: int | None = 5, seed: int = 0, name: str = SHIPPED,
        block: int = 1024) -> Normalisation:
    """Fit FSN on unit ``embeddings`` (N, D) whose rows belong to ``identities`` (N,): rows
    with equal identity are the same person (never an impostor pair); no other labels.

    ``neighbours=None`` is the paper's rule: a cluster's threshold is taken over the impostor
    pairs with at least one face in it, and offsets are relative to the threshold over all
    impostor pairs. ``neighbours=m`` (candor's default, m=5) takes it over the impostor pairs
    between the cluster and its m nearest clusters (by centroid) and itself, and offsets are
    relative to the size-weighted mean of the cluster thresholds, so scores keep their scale.
    The local rule measures what a demographic false match rate measures: how often a face is
    confused with the faces that look most like it. The paper's rule also counts pairs with
    faces far away, so a population that differs strongly from the rest of the reference set
    looks sparse and is over-corrected (docs/fairness.md has both measured). Each unordered
    pair is counted once."""
    e = np.asarray(embeddings, dtype=np.float32)
    ids = np.asarray(identities)
    n = len(e)
    if len(ids) != n:
        raise ValueError("one identity per embedding")
    if not 0 < target_fmr < 1:
        raise ValueError("target_fmr must be between 0 and 1")
    if neighbours is not None and neighbours < 0:
        raise ValueError("neighbours must be None or >= 0")
    centroids = kmeans(e, k, seed)
    cluster = np.argmax(e @ centroids.T, axis=1)
    sizes = np.bincount(cluster, minlength=k)
    columns = np.arange(n)
    nearest = np.argsort(-(centroids @ centroids.T), axis=1, kind="stable")

    thresholds = np.full(k, np.nan)
    for c in range(k):
        rows = np.flatnonzero(cluster == c)
        if len(rows) == 0:
            continue
        cols = columns if neighbours is None else \
            np.flatnonzero(np.isin(cluster, nearest[c, :neighbours + 1]))
        s = e[rows] @ e[cols].T
        valid = (((cluster[cols][None, :] != c) | (cols[None, :] > rows[:, None]))
                 & (ids[cols][None, :] != ids[rows][:, None]))
        v = s[valid]
        if v.size:
            thresholds[c] = float(np.quantile(v, 1.0 - target_fmr))

    if neighbours is None:  # the paper: relative to the threshold over all impostor pairs
        _, id_counts = np.unique(ids, return_counts=True)
        total = n * (n - 1) // 2 - int((id_counts * (id_counts - 1) // 2).sum())
        need = int(math.ceil(target_fmr * total)) + 2
        tops = []
        for start in range(0, n, block):
            rows = columns[start:start + block]
            s = e[rows] @ e.T
            valid = (columns[None, :] > rows[:, None]) & (ids[None, :] != ids[rows][:, None])
            tops.append(_largest(s[valid], need))
        reference = _quantile_from_top(np.concatenate(tops), total, 1.0 - target_fmr)
    else:
        known = ~np.isnan(thresholds)
        reference = float(np.average(thresholds[known], weights=sizes[known]))
    thresholds = np.where(np.isnan(thresholds), reference, thresholds)
    offsets = -(thresholds - reference) / 2.0
    return Normalisation(name=name, centroids=centroids, offsets=offsets.astype(np.float32),
                         global_threshold=float(reference), target_fmr=float(target_fmr),
                         cluster_thresholds=thresholds.astype(np.float32),
                         cluster_sizes=sizes.astype(np.int64))


def _largest(values: np.ndarray, m: int) -> np.ndarray:
    if m >= values.size:
        return values
    return np.partition(values, values.size - m)[values.size - m:]


def _quantile_from_top(top: np.ndarray, total: int, q: float) -> float:
    """``np.quantile(x, q)`` (linear) of ``total`` values ``x``, given ``top`` = their largest
    ones, enough of them to reach the q-quantile."""
    t = np.sort(np.asarray(top, np.float64))
    pos = (total - 1) * q
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    skip = total - t.size  # values below the ones kept
    if lo < skip:
        raise ValueError("not enough of the largest values to find this quantile")
    a, b = t[lo - skip], t[hi - skip]
    return float(a + (b - a) * (pos - lo))
