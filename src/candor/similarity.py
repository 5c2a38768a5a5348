"""Similarity (0-100) from two face embeddings: the one place where a score becomes a number
users see. Embeddings are L2-normalised so that search can use inner products; similarity
is a monotone function of the cosine between them.

The mapping is a logistic curve on the Euclidean distance between the unit vectors,
``d = sqrt(2 - 2 cos)``, centred so that the default threshold of 80 sits at the distance
that separates same-person from different-person pairs on LFW View 1's training pairs
(see docs/similarity.md). The evaluation work replaces it with a calibrated table.
"""

from __future__ import annotations

import numpy as np

#: distance at which similarity is 50, and the slope of the logistic curve; 80 falls at
#: distance 0.4126, the accuracy-optimal threshold on LFW View 1's pairsDevTrain.txt
MIDPOINT = 0.468
SLOPE = 25.0


def normalise(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); zero rows stay zero."""
    e = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(e, axis=-1, keepdims=True)
    return e / np.where(norms == 0, 1, norms)


def similarity_from_cosine(cosine: np.ndarray | float) -> np.ndarray:
    """Similarity 0-100 for cosine(s) between unit embeddings; monotone increasing."""
    cos = np.clip(np.asarray(cosine, dtype=np.float64), -1.0, 1.0)
    distance = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * cos))
    return 100.0 / (1.0 + np.exp(SLOPE * (distance - MIDPOINT)))


def cosine_for_similarity(similarity: float) -> float:
    """The smallest cosine whose similarity reaches ``similarity`` (for index-side thresholds)."""
    s = min(max(float(similarity), 1e-9), 100 - 1e-9)
    distance = MIDPOINT + np.log(100.0 / s - 1.0) / SLOPE
    distance = max(distance, 0.0)
    return float(1.0 - distance * distance / 2.0)


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Similarity between unit embeddings ``a`` (N, D) and ``b`` (M, D): an (N, M) array."""
    return similarity_from_cosine(np.atleast_2d(a) @ np.atleast_2d(b).T)
