"""Similarity (0-100) from two face embeddings: the one place where a score becomes a number
users see. Embeddings are L2-normalised so that search can use inner products; the score of a
comparison is the cosine between them.

Similarity is *calibrated*: a shipped, monotone table (``candor/data/similarity-table.json``,
made by ``candor eval calibrate``) maps the score to Similarity so that Similarity S means a
false match rate of about F(S) on the reference sets it was fitted on:

    Similarity  60     70     80     90     95       99
    FMR         1e-1   1e-2   1e-3   1e-4   2.8e-5   1e-5

(``S = 50 - 10 log10 F`` up to 90, then nine points per decade up to 99 = 1e-5.) Between the
table's knots the mapping is linear in the score; above 99 it rises linearly to 100 at a
perfect score. How the table was made, and what it means for users, is in docs/similarity.md.

The table is a function of a score, so that a score normalisation placed in front of it
(cosine -> normalised score -> table -> Similarity) keeps one mapping: each scoring has its own
table in the file, keyed by the scoring's name (``raw-cosine`` for the plain cosine).

Score normalisation (:mod:`candor.scoring.normalisation`, Fair Score Normalization) is that step, on by
default: each comparison's cosine is shifted by the two faces' cluster offsets, so that one
threshold falsely matches different populations about equally often (docs/fairness.md). It
needs both embeddings, which is why the functions here take embeddings, not cosines:
:func:`similarity` (compare), :func:`candidate_similarities` and :func:`rank` (search over a
vector index, which supplies cosines and stored embeddings). A :class:`Scoring` holds the
choices a process made (normalisation on or off: ``CANDOR_NORMALISATION=off`` or
``candor --no-normalisation``; another tables file: ``CANDOR_SIMILARITY_TABLE``), built once from
:class:`candor.config.Settings`; its :attr:`Scoring.description` names it for the audit ledger.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from candor.scoring import normalisation as fsn

#: the scoring of the plain cosine between unit embeddings
RAW = "raw-cosine"
#: the shipped tables file; Settings.similarity_table may name another (for evaluation)
TABLE_FILE = "similarity-table.json"

#: the thresholds candor applies when a request names none (the numbers behind them are in
#: docs/fairness.md): 1:1 verification (CompareFaces) keeps Rekognition's 80, a promised false
#: match rate of 1e-3; 1:N identification (searches of faces and users) uses 85, the highest
#: threshold at which the FairFace race and gender differentials stay within 3x and 1.5x. One
#: search compares a face against every stored face, so it needs the stricter point: this is
#: the lesson of the ACLU's 28 Congress members matched at Rekognition's default of 80.
VERIFICATION_THRESHOLD = 80.0
IDENTIFICATION_THRESHOLD = 85.0
#: celebrity recognition (RecognizeCelebrities) names a person only when their MatchConfidence
#: (an open-set score on this Similarity scale) reaches the gallery's threshold, measured on the
#: gallery itself and never below this floor (candor.service.celebrities.calibrated_threshold;
#: the measurements are in docs/celebrities.md)
CELEBRITY_THRESHOLD = 99.45



def normalise(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); zero rows stay zero."""
    e = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(e, axis=-1, keepdims=True)
    return e / np.where(norms == 0, 1, norms)


# -- the calibrated table ----------------------------------------------------------------
@lru_cache(maxsize=4)
def _tables(path: str | None) -> dict:
    if path:
        return json.loads(Path(path).read_text())
    return json.loads((resources.files("candor") / "data" / TABLE_FILE).read_text())


def table(scoring: str = RAW, table_file: str | Path | None = None) -> dict:
    """The calibration table for ``scoring`` (knots, rows, provenance) in ``table_file`` (the
    shipped file by default); the raw-cosine table when there is none for that scoring."""
    tables = _tables(str(table_file) if table_file else None)["tables"]
    return tables.get(scoring) or tables[RAW]


@lru_cache(maxsize=8)
def _knots(scoring: str, path: str | None) -> tuple[np.ndarray, np.ndarray]:
    knots = np.asarray(table(scoring, path)["knots"], dtype=np.float64)
    return knots[:, 0].copy(), knots[:, 1].copy()


def _table_knots(scoring: str, table_file: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    return _knots(scoring, str(table_file) if table_file else None)


def mapping_name(scoring: str = RAW, table_file: str | Path | None = None) -> str:
    """Names the score-to-Similarity mapping in force (for the audit ledger)."""
    t = table(scoring, table_file)
    return f"table:{t['score']}:{t.get('created', '?')}"


def similarity_from_score(score: np.ndarray | float, scoring: str = RAW,
                          table_file: str | Path | None = None) -> np.ndarray:
    """Similarity 0-100 for score(s) of ``scoring``; strictly increasing in the score."""
    x, y = _table_knots(scoring, table_file)
    s = np.clip(np.asarray(score, dtype=np.float64), x[0], x[-1])
    return np.interp(s, x, y)


def score_for_similarity(similarity: float, scoring: str = RAW,
                         table_file: str | Path | None = None) -> float:
    """The smallest score whose Similarity reaches ``similarity`` (inverse of the table)."""
    x, y = _table_knots(scoring, table_file)
    return float(np.interp(min(max(float(similarity), 0.0), 100.0), y, x))


def similarity_from_cosine(score: np.ndarray | float, normalised: bool | None = None,
                           table_file: str | Path | None = None) -> np.ndarray:
    """Similarity 0-100 for score(s) of the scoring (the cosine, or the normalised cosine when
    normalisation is on, the default); monotone increasing. This is the table alone: to score
    two faces use :func:`similarity`."""
    return similarity_from_score(score, scoring_name(normalised), table_file)


def cosine_for_similarity(similarity: float, normalised: bool | None = None,
                          table_file: str | Path | None = None) -> float:
    """The smallest score of the scoring whose Similarity reaches ``similarity``."""
    return score_for_similarity(similarity, scoring_name(normalised), table_file)


def false_match_rate(similarity: float) -> float:
    """The false match rate Similarity ``similarity`` stands for, F(S), on the rate scale the
    table is fitted to (1e-3 at 80, 1e-4 at 90, 1e-5 at 99; capped at 1 below 50)."""
    s = float(similarity)
    lg = (s - 50.0) / 10.0 if s <= 90.0 else 4.0 + (s - 90.0) / 9.0
    return min(1.0, math.pow(10.0, -lg))


# -- score normalisation ---------------------------------------------------------------
def active_normalisation(normalised: bool | None = None) -> fsn.Normalisation | None:
    """The normalisation parameters that apply (on unless ``normalised`` is False), or None
    when scores are raw cosines."""
    return fsn.shipped() if normalised is not False else None


def scoring_name(normalised: bool | None = None) -> str:
    """The scoring in force: the normalisation's name, or ``raw-cosine``."""
    norm = active_normalisation(normalised)
    return norm.name if norm is not None else RAW


def scoring_description(normalised: bool | None = None,
                        table_file: str | Path | None = None) -> str:
    """Scoring and Similarity table in force, as the audit ledger records them."""
    name = scoring_name(normalised)
    return f"{name}|{mapping_name(name, table_file)}"


# -- scores and Similarity of faces ------------------------------------------------------
def scores(a: np.ndarray, b: np.ndarray, normalised: bool | None = None) -> np.ndarray:
    """Scores between unit embeddings ``a`` (N, D) and ``b`` (M, D), an (N, M) array: the
    cosines, shifted by the faces' cluster offsets when normalisation is on."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    norm = active_normalisation(normalised)
    if norm is None:
        return (a @ b.T).astype(np.float64)
    return norm.scores(a, b)


def similarity(a: np.ndarray, b: np.ndarray, normalised: bool | None = None,
               table_file: str | Path | None = None) -> np.ndarray:
    """Similarity between unit embeddings ``a`` (N, D) and ``b`` (M, D): an (N, M) array."""
    return similarity_from_cosine(scores(a, b, normalised), normalised, table_file)


def candidate_scores(query: np.ndarray, candidates: np.ndarray, cosines: np.ndarray,
                     normalised: bool | None = None) -> np.ndarray:
    """Scores of ``candidates`` (M, D) against ``query`` (D,) given their cosines (M,) from a
    vector index: what :func:`scores` gives, without recomputing the cosines."""
    cos = np.asarray(cosines, dtype=np.float64).reshape(-1)
    norm = active_normalisation(normalised)
    if norm is None or len(cos) == 0:
        return cos
    q = norm.face_offsets(np.reshape(query, (1, -1)))
    c = norm.face_offsets(np.reshape(candidates, (len(cos), -1)))
    return norm.adjust(cos[None, :], q, c)[0]


def candidate_similarities(query: np.ndarray, candidates: np.ndarray, cosines: np.ndarray,
                           normalised: bool | None = None,
                           table_file: str | Path | None = None) -> np.ndarray:
    """Similarity to ``query`` of each candidate (rows of ``candidates``, with their
    ``cosines`` to the query from a vector index)."""
    return similarity_from_cosine(candidate_scores(query, candidates, cosines, normalised),
                                  normalised, table_file)


def rank(query: np.ndarray, nearest: Callable[[int], tuple[np.ndarray, np.ndarray]],
         vectors: Callable[[np.ndarray], np.ndarray], k: int, threshold: float,
         normalised: bool | None = None,
         table_file: str | Path | None = None) -> list[tuple[float, int]]:
    """The best ``k`` (Similarity, key) at or above ``threshold``, best first, from a vector
    index: ``nearest(n)`` gives the top ``n`` (cosines, keys) by cosine, best first, and
    ``vectors(keys)`` the stored unit embeddings of those keys.

    Normalisation can reorder candidates, so the index is asked for more until no candidate it
    has not returned could still make the list: one beyond the last returned has a cosine no
    higher than the last one's, hence a score no higher than that plus the query's offset plus
    the largest cluster offset."""
    if k <= 0:
        return []
    norm = active_normalisation(normalised)
    fetch = k
    while True:
        cos, keys = nearest(fetch)
        cos = np.asarray(cos, np.float64)
        if norm is None or len(keys) == 0:
            s, order = cos, np.arange(len(keys))
            break
        s = candidate_scores(query, vectors(np.asarray(keys, np.int64)), cos, True)
        order = np.argsort(-s, kind="stable")
        if len(keys) < fetch:
            break  # the index has nothing more
        best_unseen = (cos[-1] + float(norm.face_offsets(np.reshape(query, (1, -1)))[0])
                       + float(norm.offsets.max()))
        floor = cosine_for_similarity(threshold, True, table_file) if threshold > 0 else -np.inf
        kth = s[order[k - 1]] if len(s) >= k else -np.inf
        if best_unseen < max(floor, kth):
            break
        fetch *= 4
    sims = similarity_from_cosine(s, norm is not None, table_file)
    return [(float(sims[i]), int(keys[i])) for i in order if sims[i] >= threshold][:k]


@dataclass(frozen=True)
class Scoring:
    """How this process turns embeddings into Similarity: score normalisation on or off, and
    which tables file. Built once from :class:`candor.config.Settings` and handed to the engine
    and the service, so that every door scores the same way."""

    normalised: bool = True
    table_file: Path | None = None

    @classmethod
    def from_settings(cls, settings) -> Scoring:
        return cls(settings.normalisation, settings.similarity_table)

    @property
    def name(self) -> str:
        return scoring_name(self.normalised)

    @property
    def description(self) -> str:
        return scoring_description(self.normalised, self.table_file)

    def scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The scores the table maps (cosines, normalised when normalisation is on)."""
        return scores(a, b, self.normalised)

    def to_similarity(self, score: np.ndarray | float) -> np.ndarray:
        """Similarity of scores, through this scoring's table (what :mod:`candor.eval` uses
        to measure exactly what the engine does)."""
        return similarity_from_cosine(score, self.normalised, self.table_file)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return similarity(a, b, self.normalised, self.table_file)

    def candidate_similarities(self, query: np.ndarray, candidates: np.ndarray,
                               cosines: np.ndarray) -> np.ndarray:
        return candidate_similarities(query, candidates, cosines, self.normalised, self.table_file)

    def rank(self, query: np.ndarray, nearest: Callable[[int], tuple[np.ndarray, np.ndarray]],
             vectors: Callable[[np.ndarray], np.ndarray], k: int,
             threshold: float) -> list[tuple[float, int]]:
        return rank(query, nearest, vectors, k, threshold, self.normalised, self.table_file)

    def from_score(self, score: np.ndarray | float) -> np.ndarray:
        return similarity_from_cosine(score, self.normalised, self.table_file)

    def score_for(self, similarity_value: float) -> float:
        return cosine_for_similarity(similarity_value, self.normalised, self.table_file)
