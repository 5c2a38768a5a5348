"""Cross-dataset fairness: fit on one dataset, evaluate on another (``candor eval fairness
--fit-on SET``).

The shipped parameters and Similarity tables were fitted on data that includes half of
FairFace, so evaluating them on FairFace is an in-domain split: different people, the same
population. That overstated what users get (docs/fairness.md, section 6). Here everything a
scoring learns from data is fitted on the ``--fit-on`` sets alone:

- Fair Score Normalization with the shipped settings (k, target FMR, neighbours), from
  identities only (:func:`candor.eval.fit_normalisation.reference_embeddings` drops every
  other label);
- a Similarity table for the normalised score *and* one for the raw cosine, from the same
  sets' pairs (:func:`candor.eval.calibration.fit_table`), so that Similarity S promises F(S)
  as calibrated without the evaluation data.

The fairness evaluation then runs with both scorings on the evaluation set and the two are put
side by side under ``cross_dataset`` (same shape as ``before_after``), next to the in-domain
``before_after`` of the shipped scoring, never instead of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from candor.eval.calibration import fit_table, table_similarity
from candor.eval.metrics import Scores
from candor.scoring import normalisation as fsn


@dataclass
class FittedScoring:
    """A scoring fitted in-process: ``scores`` (cosine, normalised when ``norm`` is set) and
    ``to_similarity`` through its own table. :mod:`candor.eval.scoring` accepts it wherever it
    accepts ``normalised``."""

    name: str
    norm: fsn.Normalisation | None = None
    table: dict | None = None

    def scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        if self.norm is None:
            return (a @ b.T).astype(np.float64)
        return self.norm.scores(a, b)

    def to_similarity(self, scores: np.ndarray) -> np.ndarray:
        return table_similarity(self.table)(scores)


def fit(specs: list[str], *, clusters: int = 100, target_fmr: float = 1e-2,
        neighbours: int | None = 5, seed: int = 0, **embed_args) -> tuple[FittedScoring,
                                                                           FittedScoring, dict]:
    """(raw scoring, normalised scoring, provenance), everything fitted on ``specs`` only."""
    from candor.eval.fit_normalisation import reference_embeddings
    from candor.eval.scoring import all_pairs

    e, ids, sets, _ = reference_embeddings(specs, **embed_args)
    norm = fsn.fit(e, ids, k=min(clusters, len(e)), target_fmr=target_fmr,
                   neighbours=neighbours, seed=seed, name="fitted-on-" + "+".join(specs))
    found = np.ones(len(e), bool)
    out = []
    for name, n in (("raw-cosine (table fitted on --fit-on)", None),
                    (f"{norm.name} (FSN k={norm.k})", norm)):
        scoring = FittedScoring(name, n)
        gen, imp, _ = all_pairs(e, ids, found, normalised=scoring)
        scoring.table = fit_table(Scores(gen, imp), score_name=name)
        out.append(scoring)
    provenance = {"fit_on": sets, "faces": int(len(e)), "clusters": norm.k,
                  "target_fmr": target_fmr, "neighbours": neighbours, "seed": seed,
                  "labels_used": "identities only (which pairs are impostors)"}
    return out[0], out[1], provenance
