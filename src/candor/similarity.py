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
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

#: the scoring of the plain cosine between unit embeddings
RAW = "raw-cosine"
#: the shipped tables file; CANDOR_SIMILARITY_TABLE may name another (for evaluation)
TABLE_FILE = "similarity-table.json"


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


def table(scoring: str = RAW) -> dict:
    """The calibration table for ``scoring`` (knots, rows, provenance); the raw-cosine table
    when there is none for that scoring."""
    tables = _tables(os.environ.get("CANDOR_SIMILARITY_TABLE") or None)["tables"]
    return tables.get(scoring) or tables[RAW]


@lru_cache(maxsize=8)
def _knots(scoring: str, path: str | None) -> tuple[np.ndarray, np.ndarray]:
    knots = np.asarray(table(scoring)["knots"], dtype=np.float64)
    return knots[:, 0].copy(), knots[:, 1].copy()


def _table_knots(scoring: str) -> tuple[np.ndarray, np.ndarray]:
    return _knots(scoring, os.environ.get("CANDOR_SIMILARITY_TABLE") or None)


def mapping_name(scoring: str = RAW) -> str:
    """Names the score-to-Similarity mapping in force (for the audit ledger)."""
    t = table(scoring)
    return f"table:{t['score']}:{t.get('created', '?')}"


def similarity_from_score(score: np.ndarray | float, scoring: str = RAW) -> np.ndarray:
    """Similarity 0-100 for score(s) of ``scoring``; strictly increasing in the score."""
    x, y = _table_knots(scoring)
    s = np.clip(np.asarray(score, dtype=np.float64), x[0], x[-1])
    return np.interp(s, x, y)


def score_for_similarity(similarity: float, scoring: str = RAW) -> float:
    """The smallest score whose Similarity reaches ``similarity`` (inverse of the table)."""
    x, y = _table_knots(scoring)
    return float(np.interp(min(max(float(similarity), 0.0), 100.0), y, x))


def similarity_from_cosine(cosine: np.ndarray | float) -> np.ndarray:
    """Similarity 0-100 for cosine(s) between unit embeddings; monotone increasing."""
    return similarity_from_score(cosine, RAW)


def cosine_for_similarity(similarity: float) -> float:
    """The smallest cosine whose similarity reaches ``similarity`` (for index-side thresholds)."""
    return score_for_similarity(similarity, RAW)


def false_match_rate(similarity: float) -> float:
    """The false match rate Similarity ``similarity`` stands for, F(S), on the rate scale the
    table is fitted to (1e-3 at 80, 1e-4 at 90, 1e-5 at 99; capped at 1 below 50)."""
    s = float(similarity)
    lg = (s - 50.0) / 10.0 if s <= 90.0 else 4.0 + (s - 90.0) / 9.0
    return min(1.0, math.pow(10.0, -lg))


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Similarity between unit embeddings ``a`` (N, D) and ``b`` (M, D): an (N, M) array."""
    return similarity_from_cosine(np.atleast_2d(a) @ np.atleast_2d(b).T)
