"""The calibrated Similarity table: Similarity S means "false match rate about F(S)".

The rate scale (documented in docs/similarity.md) is fixed; the data decide which raw score
each Similarity corresponds to:

    S = 50 - 10 * log10(F)          for F from 0.5 down to 1e-4  (60 -> 1e-1, 70 -> 1e-2,
                                                                   80 -> 1e-3, 90 -> 1e-4)
    S = 90 + 9 * (-log10(F) - 4)    for F from 1e-4 down to 1e-5  (99 -> 1e-5)

Above 99 (F below 1e-5) Similarity rises linearly in score to 100 at a perfect score; below
S(0.5) = 53.01 (more than half of all strangers score higher: no match meaning) it falls
linearly to 0 at the lowest score. The knots in between are the impostor-score quantiles of
a reference set: the score where exactly the fraction F(S) of its impostor pairs (every pair
of photos of different people) score at or above.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from candor import clock
from candor.eval.metrics import Scores, wilson

#: the Similarity levels a user is most likely to pick, and the rates they promise
ANCHORS = {80: 1e-3, 90: 1e-4, 99: 1e-5}
#: the lowest Similarity the rate scale covers: F = 0.5
LOW_FMR = 0.5
KNOT_STEP = 0.25
#: a knot is "measured" when at least this many impostor pairs reach it
MIN_FALSE_MATCHES = 10
FORMAT = "candor-similarity-table/1"


def fmr_for_similarity(s):
    """F(S): the false match rate Similarity S stands for (vectorised; None-free: S above 99
    gives the extrapolated rate of the same curve and S below 53 caps at 0.5... 1)."""
    s = np.asarray(s, np.float64)
    low = 10.0 ** (-(s - 50.0) / 10.0)
    high = 10.0 ** (-(4.0 + (s - 90.0) / 9.0))
    return np.minimum(1.0, np.where(s <= 90.0, low, high))


def similarity_for_fmr(f):
    """S(F), the inverse of :func:`fmr_for_similarity` on (0, 1]."""
    f = np.asarray(f, np.float64)
    lg = -np.log10(f)
    return np.where(lg <= 4.0, 50.0 + 10.0 * lg, 90.0 + 9.0 * (lg - 4.0))


COMBINE = ("max", "mean", "pooled")


def combined_threshold(sets: list[Scores], fmr: float, combine: str = "max") -> float:
    """The lowest score at which the reference sets' false match rate is at most ``fmr``:
    ``max`` - on every set (the promise holds on each reference population, and is
    conservative for the others); ``mean`` - on average over sets, each weighted equally;
    ``pooled`` - over all their impostor pairs together (large sets dominate)."""
    if combine == "max":
        return max(s.threshold_at_fmr(fmr) for s in sets)
    if combine == "pooled":
        return Scores(np.zeros(0), np.concatenate([s.impostor for s in sets])).threshold_at_fmr(fmr)
    if combine != "mean":
        raise ValueError(f"combine must be one of {COMBINE}")
    lo = min(s.threshold_at_fmr(fmr) for s in sets)    # mean FMR may exceed fmr here ...
    hi = max(s.threshold_at_fmr(fmr) for s in sets)    # ... and is at most fmr here
    if not np.isfinite(lo):
        lo = -1.0
    for _ in range(60):                                # bisection: mean FMR falls with t
        mid = (lo + hi) / 2
        if np.mean([s.fmr(mid) for s in sets]) <= fmr:
            hi = mid
        else:
            lo = mid
    return float(hi)


def fit_table(sets: list[Scores] | Scores, *, combine: str = "max", score_name: str = "raw-cosine",
              score_range=(-1.0, 1.0), provenance: dict | None = None,
              set_names: list[str] | None = None) -> dict:
    """The table from reference sets' impostor (and genuine) scores."""
    sets = [sets] if isinstance(sets, Scores) else list(sets)
    names = set_names or [f"set{i + 1}" for i in range(len(sets))]
    lo_score, hi_score = score_range
    s_low = float(similarity_for_fmr(LOW_FMR))
    levels = np.concatenate([[s_low], np.arange(math.ceil(s_low / KNOT_STEP) * KNOT_STEP, 99.0,
                                                KNOT_STEP), [99.0]])
    rows, knots = [], [(float(lo_score), 0.0)]
    previous = lo_score
    for s in levels:
        f = float(fmr_for_similarity(s))
        t = combined_threshold(sets, f, combine)
        # strictly increasing scores (quantiles of a finite sample can tie)
        t = max(float(t), float(np.nextafter(previous, np.inf)))
        previous = t
        per_set = {}
        for name, sc in zip(names, sets):
            fm = int(sc.false_matches(t))
            per_set[name] = {"fmr": fm / sc.n_impostor if sc.n_impostor else None,
                             "false_matches": fm,
                             "fnmr": float(sc.fnmr(t)) if sc.n_genuine else None}
        measured = any(v["false_matches"] >= MIN_FALSE_MATCHES for v in per_set.values())
        rows.append({"similarity": round(float(s), 4), "fmr": f, "score": t,
                     "measured": measured, "sets": per_set})
        knots.append((t, float(s)))
    knots.append((max(float(hi_score), float(np.nextafter(previous, np.inf))), 100.0))
    lowest = {name: (MIN_FALSE_MATCHES / sc.n_impostor if sc.n_impostor else None)
              for name, sc in zip(names, sets)}
    return {
        "format": FORMAT,
        "score": score_name,
        "combine": combine,
        "rate_scale": "S = 50 - 10 log10(F) for 0.5 >= F >= 1e-4; S = 90 + 9 (-log10(F) - 4) "
                      "for 1e-4 >= F >= 1e-5; linear in score above 99 and below 53.01",
        "anchors": {str(k): v for k, v in ANCHORS.items()},
        "knots": [[float(x), float(y)] for x, y in knots],
        "rows": rows,
        "sets": {name: {"impostor_pairs": sc.n_impostor, "genuine_pairs": sc.n_genuine,
                        "lowest_measurable_fmr": lowest[name]}
                 for name, sc in zip(names, sets)},
        "created": clock.stamp(),
        "provenance": provenance or {},
    }


def check_table(table: dict, scores: Scores, similarity: Callable[[np.ndarray], np.ndarray],
                levels=(80, 90, 95, 99)) -> list[dict]:
    """Measured FMR (and FNMR) at each Similarity level on a set that was not used to fit the
    table, next to what the table promises, with Wilson intervals over pairs and the ratio."""
    imp = similarity(scores.impostor)
    gen = similarity(scores.genuine) if scores.n_genuine else np.zeros(0)
    on = Scores(gen, imp)
    out = []
    for s in levels:
        promised = float(fmr_for_similarity(s))
        row = on.at(float(s))
        measured = row["fmr"]
        ratio = measured / promised if measured is not None and measured > 0 else None
        row.update({"similarity": s, "promised_fmr": promised, "ratio": ratio,
                    "within_factor_3": ratio is not None and 1 / 3 <= ratio <= 3,
                    "resolvable": scores.n_impostor * promised >= MIN_FALSE_MATCHES})
        if measured == 0:
            row["fmr_upper_95"] = wilson(0, on.n_impostor)[1] if on.n_impostor else None
        out.append(row)
    return out


def table_similarity(table: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The Similarity function of a table (score -> 0..100), as candor.scoring.similarity applies it."""
    knots = np.asarray(table["knots"], np.float64)

    def apply(score):
        score = np.asarray(score, np.float64)
        out = np.interp(score, knots[:, 0], knots[:, 1])
        return np.where(np.isneginf(score), -np.inf, out)   # no face stays no face

    return apply


# -- the whole evaluation ------------------------------------------------------------------
def run(reference: list[str], check: list[str] = (), *, images=None, combine: str = "max",
        levels=(80, 90, 95, 99), bootstrap: int = 200, seed: int = 0,
        normalised: bool | None = None, backend: str | None = None, detector: str | None = None,
        face: str = "centre", data_dir=None, workers: int | None = None,
        use_cache: bool = True, progress=None, command: str | None = None) -> dict:
    """Fit a table on the ``reference`` sets and check it on every set (``check`` sets are held
    out). Sets are :func:`candor.eval.datasets.load` specs (``lfw/``, ``labels.csv@1/2``, ...).
    ``progress(label)`` returns a ``(done, total)`` callback for that set's embedding."""
    from candor.eval import datasets, metrics, scoring
    from candor.eval import embeddings as emb_mod

    if not reference:
        raise ValueError("at least one reference set is needed")
    score_name = scoring.scoring_name(normalised)
    loaded = []
    for role, specs in (("reference", reference), ("check", check)):
        for spec in specs:
            s = datasets.load(spec, images)
            emb = emb_mod.embed_images(s.paths, backend=backend, detector=detector, face=face,
                                       data_dir=data_dir, workers=workers, use_cache=use_cache,
                                       progress=progress(str(spec)) if progress else None)
            g, i, counts = scoring.all_pairs(emb.embeddings, s.identities, emb.found,
                                             normalised=normalised)
            loaded.append({"name": str(spec), "role": role, "set": s, "emb": emb,
                           "scores": metrics.Scores(g, i), "counts": counts})
    refs = [x for x in loaded if x["role"] == "reference"]
    provenance = {
        "command": command,
        "reference": [{"set": x["name"], **x["counts"]} for x in refs],
        "combine": combine,
        "settings": {**refs[0]["emb"].settings, "scoring": score_name},
        "candor_version": _version(),
    }
    table = fit_table([x["scores"] for x in refs], combine=combine, score_name=score_name,
                      provenance=provenance, set_names=[x["name"] for x in refs])
    to_sim = table_similarity(table)
    checks, curves, hists = [], {}, {}
    grid = np.arange(53.0, 100.0, 0.25)
    for x in loaded:
        sc = x["scores"]
        rows = check_table(table, sc, to_sim, levels)
        held_out = x["role"] == "check"
        if held_out and bootstrap:
            e, found = x["emb"].embeddings, x["emb"].found
            matrix = np.empty((len(e), len(e)), np.float32)
            for start in range(0, len(e), scoring.BLOCK):
                stop = min(len(e), start + scoring.BLOCK)
                matrix[start:stop] = to_sim(scoring.pair_score(e[start:stop], e, normalised))
            boot = metrics.impostor_rates(matrix, np.asarray(x["set"].identities),
                                          [float(v) for v in levels], bootstrap, seed,
                                          valid=found)
            for row, ci in zip(rows, boot["interval"]):
                row["fmr_bootstrap_ci"] = ci
            del matrix
        sim_imp = to_sim(sc.impostor)
        sim_gen = to_sim(sc.genuine) if sc.n_genuine else np.zeros(0)
        on = metrics.Scores(sim_gen, sim_imp)
        curves[x["name"]] = {"similarity": grid.tolist(), "fmr": on.fmr(grid).tolist()}
        rng = np.random.default_rng(seed)
        sample = sim_imp if len(sim_imp) <= 200_000 else rng.choice(sim_imp, 200_000, replace=False)
        hists[x["name"]] = {"genuine": sim_gen[np.isfinite(sim_gen)] if len(sim_gen) else None,
                            "impostor": sample}
        checks.append({"name": x["name"], "held_out": held_out, "rows": rows,
                       "impostor_pairs": sc.n_impostor, "genuine_pairs": sc.n_genuine,
                       **({"tar_at_far": [sc.tar_at_far(f) for f in (1e-3, 1e-4, 1e-5)]}
                          if sc.n_genuine else {})})
    return {
        "kind": "calibration",
        "settings": {**refs[0]["emb"].settings, "scoring": score_name},
        "reference": [{"source": x["name"], "photos": x["counts"]["photos"],
                       "photos_without_face": x["counts"]["photos_without_face"],
                       "people": x["counts"]["people"],
                       "genuine_pairs": x["counts"]["genuine_pairs"],
                       "impostor_pairs": x["counts"]["impostor_pairs"],
                       "lowest_measurable_fmr": table["sets"][x["name"]]["lowest_measurable_fmr"],
                       "embedding_seconds": round(x["emb"].seconds, 2),
                       "cached_photos": x["emb"].cached}
                      for x in refs],
        "held_out": [x["name"] for x in loaded if x["role"] == "check"],
        "checks": checks,
        "table": table,
        "plots": {"curves": curves, "hists": hists},
    }


def _version() -> str:
    from candor import __version__

    return __version__


def install_table(table: dict, path) -> None:
    """Write ``table`` into the tables file at ``path`` under its scoring's name, keeping the
    tables of other scorings (raw cosine, each normalisation) that are already there."""
    import json
    from pathlib import Path

    path = Path(path)
    doc = {"format": "candor-similarity-tables/1", "tables": {}}
    if path.exists():
        doc = json.loads(path.read_text())
    doc.setdefault("tables", {})[table["score"]] = table
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
