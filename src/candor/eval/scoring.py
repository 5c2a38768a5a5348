"""Scores of every pair in an embedded image set: genuine (same person) and impostor
(different people), computed blockwise with matrix products, so millions of pairs take
seconds. The score is whatever :func:`candor.scoring.similarity.score` says (the cosine today; a
normalised score when score normalisation is on), so the evaluations measure exactly what
the engine does."""

from __future__ import annotations

import numpy as np

from candor.eval.metrics import _dense_ids
from candor.scoring import similarity as sim_mod

BLOCK = 1024


def pair_score(a: np.ndarray, b: np.ndarray, normalised: bool | None = None) -> np.ndarray:
    """Scores between rows of ``a`` and rows of ``b``: what the Similarity table maps (the
    engine's scoring; ``normalised`` overrides whether score normalisation is on)."""
    if hasattr(normalised, "scores"):  # a scoring fitted in-process (eval.cross_fit)
        return normalised.scores(a, b)
    fn = getattr(sim_mod, "scores", None)
    if fn is None:  # a candor without score normalisation: the score is the cosine
        return (np.atleast_2d(a) @ np.atleast_2d(b).T).astype(np.float64)
    return fn(a, b, normalised)


def to_similarity(scores, normalised: bool | None = None) -> np.ndarray:
    """Similarity (0-100) of scores, exactly as the engine maps them."""
    scores = np.asarray(scores, np.float64)
    if hasattr(normalised, "to_similarity"):
        out = normalised.to_similarity(scores)
    elif hasattr(sim_mod, "similarity_from_score"):
        out = sim_mod.similarity_from_score(scores, scoring_name(normalised))
    else:
        out = sim_mod.similarity_from_cosine(scores)
    return np.where(np.isneginf(scores), -np.inf, out)   # no face stays no face


def scoring_name(normalised: bool | None = None) -> str:
    """The name of the scoring in force (``raw-cosine`` or the normalisation's name)."""
    if hasattr(normalised, "scores"):
        return normalised.name
    fn = getattr(sim_mod, "active_normalisation", None)
    norm = fn(normalised) if fn else None
    return norm.name if norm is not None else "raw-cosine"


def paired_scores(a: np.ndarray, b: np.ndarray, normalised: bool | None = None,
                  block: int = 512) -> np.ndarray:
    """Scores of row i of ``a`` with row i of ``b``."""
    out = np.empty(len(a), np.float64)
    for start in range(0, len(a), block):
        stop = min(len(a), start + block)
        out[start:stop] = np.diagonal(pair_score(a[start:stop], b[start:stop], normalised))
    return out


def all_pairs(embeddings: np.ndarray, identities, found: np.ndarray,
              impostors: bool = True, normalised: bool | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(genuine scores, impostor scores, counts) over every unordered pair of photos. A
    genuine pair with a photo without a face scores -inf (a false non-match at any
    threshold); impostor pairs with such a photo are left out of the impostor scores and
    counted in ``counts['impostor_pairs_without_face']``."""
    ids = _dense_ids(np.asarray(identities))
    found = np.asarray(found, bool)
    n = len(ids)
    genuine, impostor = [], []
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        block = pair_score(embeddings[start:stop], embeddings[start:], normalised)
        rows = np.arange(start, stop)[:, None]
        cols = np.arange(start, n)[None, :]
        upper = cols > rows
        same = ids[rows] == ids[cols]
        both = found[rows] & found[cols]
        g = block[upper & same]
        g_ok = both[upper & same]
        genuine.append(np.where(g_ok, g, -np.inf))
        if impostors:
            impostor.append(block[upper & ~same & both].astype(np.float32))
    v = found.sum()
    per_id = np.bincount(ids, minlength=ids.max() + 1 if n else 0)
    per_id_found = np.bincount(ids[found], minlength=len(per_id))
    all_imp = (n * n - (per_id ** 2).sum()) // 2
    found_imp = (v * v - (per_id_found ** 2).sum()) // 2
    counts = {"photos": int(n), "photos_without_face": int(n - v),
              "people": int(len(per_id)), "genuine_pairs": int(((per_id * (per_id - 1)) // 2).sum()),
              "impostor_pairs": int(found_imp),
              "impostor_pairs_without_face": int(all_imp - found_imp)}
    gen = np.concatenate(genuine) if genuine else np.zeros(0)
    imp = np.concatenate(impostor) if impostor else np.zeros(0, np.float32)
    return gen.astype(np.float64), imp, counts


def similarity_matrix(embeddings: np.ndarray, normalised: bool | None = None) -> np.ndarray:
    """The full square Similarity matrix of a set (for per-group bootstraps), float32."""
    out = np.empty((len(embeddings), len(embeddings)), np.float32)
    for start in range(0, len(embeddings), BLOCK):
        stop = min(len(embeddings), start + BLOCK)
        out[start:stop] = to_similarity(pair_score(embeddings[start:stop], embeddings,
                                                   normalised), normalised)
    return out
