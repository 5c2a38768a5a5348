"""Synthetic face embeddings shaped like real ones, for the scale benchmark (``bench/scale.py``).

One million real faces are not available, so the set is grown from real dlib embeddings of the
LFW photos in the shared data (4,992 photos, 3,095 people; read through candor's evaluation
embedding cache, so a rerun costs seconds):

* the real embeddings give two covariances: **within** a person (each photo minus its person's
  mean, people with two or more photos) and **between** people (the covariance of the persons'
  means);
* a new person is a Gaussian-mixture draw: a real person's mean (chosen at random) plus
  ``SPREAD`` x a draw from the between-person Gaussian, so people cluster as real ones do
  (look-alikes, demographic groups) instead of being spread uniformly over the sphere;
* each person gets ``1 + Poisson(3)`` photos (mean 4; ``SPREAD`` was fitted with LFW's own
  mean, 1.6): the person's centre plus a draw from the
  within-person Gaussian, L2-normalised to a unit float32 vector, as candor stores them.

``describe`` measures the result against the real set (genuine and nearest-impostor cosines),
so the output shows how close the imitation is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIM = 128
#: how far a new person lies from the real person that seeds it, in between-person deviations;
#: 0.3 makes the synthetic nearest-impostor cosine match real LFW's at the same number of
#: people and photos (0.936 against 0.935; 0.6 gives 0.910): see ``describe`` and ``calibration``
SPREAD = 0.3
#: LFW View 1 has 4,992 photos of 3,095 people: 1 + Poisson(0.61) photos a person
LFW_EXTRA = 0.61


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def real_faces(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(unit embeddings, person index) of the LFW photos with a face, through the eval cache."""
    from candor.eval.embeddings import embed_images

    paths = sorted((data / "lfw").glob("*/*.jpg"))
    if not paths:
        raise SystemExit(f"no LFW photos under {data / 'lfw'} (set --data or CANDOR_TEST_DATA)")
    emb = embed_images(paths)
    names = np.array([p.parent.name for p in paths])[emb.found]
    _, person = np.unique(names, return_inverse=True)
    return unit(emb.embeddings[emb.found]), person


def _factor(cov: np.ndarray) -> np.ndarray:
    """A matrix L with L @ L.T = cov (eigen-decomposition: cov may be rank-deficient)."""
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0, None))).astype(np.float32)


class FaceModel:
    """The fitted generator: person means, the between- and within-person factors."""

    def __init__(self, faces: np.ndarray, person: np.ndarray) -> None:
        n_people = int(person.max()) + 1
        counts = np.bincount(person, minlength=n_people)
        means = np.zeros((n_people, DIM), np.float64)
        np.add.at(means, person, faces)
        means /= counts[:, None]
        multi = counts[person] >= 2
        resid = (faces - means[person])[multi]
        # unbiased: a residual from a mean of n photos is shrunk by sqrt((n - 1) / n)
        resid = resid * np.sqrt(counts[person][multi] / (counts[person][multi] - 1))[:, None]
        self.means = means.astype(np.float32)
        self.within = _factor(np.cov(resid, rowvar=False))
        self.between = _factor(np.cov(means, rowvar=False))
        self.real_people = n_people
        self.real_faces = len(faces)

    def sample(self, n: int, rng: np.random.Generator,
               extra: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` unit faces of new people and their person index; ``1 + Poisson(extra)`` a person."""
        per = 1 + rng.poisson(extra, size=n // 2 + 16)
        while per.sum() < n:
            per = np.concatenate([per, 1 + rng.poisson(extra, size=n // 2)])
        per = per[: int(np.searchsorted(np.cumsum(per), n)) + 1]
        seeds = rng.integers(0, len(self.means), len(per))
        centres = self.means[seeds] + SPREAD * (rng.standard_normal((len(per), DIM), np.float32)
                                                @ self.between.T)
        owner = np.repeat(np.arange(len(per)), per)[:n]
        out = np.empty((n, DIM), np.float32)
        for start in range(0, n, 200_000):
            stop = min(n, start + 200_000)
            noise = rng.standard_normal((stop - start, DIM), np.float32) @ self.within.T
            out[start:stop] = unit(centres[owner[start:stop]] + noise)
        return out, owner


def describe(faces: np.ndarray, person: np.ndarray, limit: int = 5000) -> dict:
    """Mean same-person cosine and mean nearest other-person cosine among ``limit`` faces."""
    faces, person = faces[:limit], person[:limit]
    sims = faces @ faces.T
    same = person[:, None] == person[None, :]
    np.fill_diagonal(same, False)
    genuine = sims[same]
    other = np.where(same | np.eye(len(faces), dtype=bool), -2.0, sims).max(axis=1)
    return {"faces": int(len(faces)), "genuine_cos_mean": round(float(genuine.mean()), 3),
            "nearest_impostor_cos_mean": round(float(other.mean()), 3)}


def calibration(model: FaceModel, faces: np.ndarray, person: np.ndarray, seed: int = 1) -> dict:
    """Real LFW against a synthetic set of the same size and photos per person."""
    fake, owner = model.sample(len(faces), np.random.default_rng(seed), extra=LFW_EXTRA)
    return {"real_lfw": describe(faces, person), "synthetic_same_shape": describe(fake, owner),
            "spread": SPREAD, "real_people": model.real_people, "real_photos": model.real_faces}
