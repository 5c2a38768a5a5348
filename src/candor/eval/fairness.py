"""``candor eval fairness``: error rates per demographic group and the differentials between
groups, as NIST's FRVT demographic-effects report (Part 3) and Part 8 summarise them.

Per group (one labels column such as ``race``, or an intersection ``race+gender``):

- detection rate: photos where the detector found a face (Wilson 95% interval);
- the impostor score distribution: Similarity of every pair of *different* people within the
  group (NIST pairs impostors within a demographic group: that is where false matches happen);
- FMR at each Similarity threshold, with a bootstrap interval over people;
- FNMR at each threshold where the group has same-person pairs;
- the Similarity at which the group's FMR reaches 1e-3, 1e-4 and 1e-5 (where measurable).

Across groups, per threshold: the highest group FMR and the differentials max/min and
max/geometric-mean, with bootstrap intervals (groups resampled independently). A group with
no false match at a threshold makes max/min unbounded: reported as null, with the group's
upper bound.

A group too small to measure (fewer than two photos with a face, or all of one person) is kept
with its detection rate, its FMR as null and ``not_measured`` saying why; the summary lists
every such group under ``not_measured``. The thresholds always include candor's verification
and identification thresholds (:mod:`candor.scoring.similarity`), so the report measures the
thresholds it recommends.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from candor.eval import datasets, metrics, scoring
from candor.eval import embeddings as emb_mod
from candor.eval.calibration import fmr_for_similarity
from candor.scoring.similarity import IDENTIFICATION_THRESHOLD, VERIFICATION_THRESHOLD

#: the thresholds the code uses (verification, identification) and three stricter ones
THRESHOLDS = tuple(sorted({VERIFICATION_THRESHOLD, IDENTIFICATION_THRESHOLD, 90.0, 95.0, 99.0}))
TARGET_FMRS = (1e-3, 1e-4, 1e-5)
HIST_BINS = np.linspace(0, 100, 101)


def run(labels: str | Path, images: str | Path | None = None, *,
        group_by: list[str] = ("race", "gender"), thresholds=THRESHOLDS,
        bootstrap: int = 500, seed: int = 0, identity_column: str | None = None,
        limit: int | None = None, normalised: bool | None = None, backend: str | None = None,
        detector: str | None = None, face: str = "centre", data_dir=None,
        workers: int | None = None, use_cache: bool = True,
        progress: Callable[[int, int], None] | None = None,
        image_set: datasets.ImageSet | None = None, compare: bool = True,
        fit_on: list[str] | None = None) -> dict:
    """Evaluate per-group error rates; returns the summary (JSON-ready) with ``plots``.
    ``compare``: when score normalisation is on, also score without it and put the two side by
    side under ``before_after`` (:mod:`candor.eval.normalisation_report`)."""
    s = image_set or datasets.load(labels, images, identity_column=identity_column, limit=limit)
    thresholds = with_recommended(thresholds)
    for spec in group_by:
        s.group_values(spec)              # fail early on a missing column
    emb = emb_mod.embed_images(s.paths, backend=backend, detector=detector, face=face,
                               data_dir=data_dir, workers=workers, use_cache=use_cache,
                               progress=progress)
    result = evaluate(s, emb, group_by=group_by, thresholds=thresholds, bootstrap=bootstrap,
                      seed=seed, normalised=normalised)
    if compare and result["settings"]["scoring"] != scoring.scoring_name(False):
        from candor.eval import normalisation_report

        before = evaluate(s, emb, group_by=group_by, thresholds=thresholds,
                          bootstrap=bootstrap, seed=seed, normalised=False)
        result["before_after"] = normalisation_report.compare(before, result)
    if fit_on:
        from candor.eval import cross_fit, normalisation_report

        raw, fitted, provenance = cross_fit.fit(list(fit_on), backend=backend, detector=detector,
                                                face=face, data_dir=data_dir, workers=workers,
                                                use_cache=use_cache)
        kw = {"group_by": group_by, "thresholds": thresholds, "bootstrap": bootstrap, "seed": seed}
        cross = normalisation_report.compare(evaluate(s, emb, normalised=raw, **kw),
                                             evaluate(s, emb, normalised=fitted, **kw))
        result["cross_dataset"] = {**cross, "fitted": provenance}
    return result


def with_recommended(thresholds) -> list[float]:
    """``thresholds`` plus the thresholds candor applies: verification, the identification
    floor and the size-aware search defaults at the gallery sizes the report recommends for
    (:data:`candor.eval.normalisation_report.SEARCH_SIZES`)."""
    from candor.eval.normalisation_report import RECOMMENDED

    return sorted({float(t) for t in thresholds} | {float(t) for t in RECOMMENDED.values()})


def evaluate(s: datasets.ImageSet, emb: emb_mod.Embedded, *, group_by=("race", "gender"),
             thresholds=THRESHOLDS, bootstrap: int = 500, seed: int = 0,
             normalised: bool | None = None) -> dict:
    """The fairness summary of an embedded set (reusable with other scorings)."""
    thresholds = [float(t) for t in thresholds]
    ids = np.asarray(s.identities)
    found = emb.found
    result: dict = {
        "kind": "fairness", "source": s.source, "images": str(s.root),
        "photos": len(s), "people": len(set(s.identities)),
        "photos_without_face": int((~found).sum()),
        "has_genuine_pairs": s.has_genuine_pairs,
        "thresholds": thresholds,
        "promised_fmr": {str(t): float(fmr_for_similarity(t)) for t in thresholds},
        "settings": {**emb.settings, "scoring": scoring.scoring_name(normalised),
                     "bootstrap": bootstrap, "seed": seed},
        "embedding": {"seconds": round(emb.seconds, 2), "cached_photos": emb.cached},
        "groupings": {},
    }
    plots: dict = {}
    for spec in group_by:
        values = np.asarray(s.group_values(spec))
        groups, group_plots = [], {}
        fmr_reps, fnmr_reps = [], []
        for gi, g in enumerate(sorted(set(values))):
            rows = np.flatnonzero(values == g)
            block, reps, greps, hist = _group(g, rows, ids, found, emb.embeddings, thresholds,
                                              bootstrap, seed + 7919 * gi, normalised)
            groups.append(block)
            fmr_reps.append(reps)
            fnmr_reps.append(greps)
            group_plots[g] = hist
        result["groupings"][spec] = {
            "groups": groups,
            "differentials": _differentials(groups, thresholds, fmr_reps, fnmr_reps),
            "detection": _detection_spread(groups),
            "guidance": _guidance(groups, thresholds),
        }
        plots[spec] = group_plots
    result["not_measured"] = [
        {"grouping": spec, "group": g["group"], "photos": g["photos"], "reason": g["not_measured"]}
        for spec, grouping in result["groupings"].items() for g in grouping["groups"]
        if g.get("not_measured")]
    result["plots"] = plots
    return result


def _group(name, rows, ids, found, embeddings, thresholds, bootstrap, seed, normalised):
    n = len(rows)
    detected = int(found[rows].sum())
    sub = rows[found[rows]]
    block: dict = {"group": name, "photos": n, "people": len(set(ids[rows])),
                   "detected": detected,
                   "detection_rate": detected / n if n else None,
                   "detection_ci": metrics.wilson(detected, n)}
    hist = {"impostor_hist": np.zeros(len(HIST_BINS) - 1), "genuine_hist": None}
    reps = greps = None
    reason = _unmeasurable(n, detected, ids[sub])
    if reason:
        block.update(impostor_pairs=0, impostor_similarity=None, fmr=None,
                     similarity_at_fmr=None, not_measured=reason)
    if detected < 2:
        return block, reps, greps, hist
    valid = found[rows]
    sim = scoring.similarity_matrix(embeddings[rows], normalised)
    people = ids[rows]
    iu = np.triu_indices(n, 1)
    both = valid[iu[0]] & valid[iu[1]]
    diff = people[iu[0]] != people[iu[1]]
    if not reason:
        imp = metrics.impostor_rates(sim, people, thresholds, bootstrap, seed, valid=valid)
        impostor = sim[iu][diff & both].astype(np.float64)
        block["impostor_pairs"] = imp["pairs"]
        block["impostor_similarity"] = _quantiles(impostor)
        block["fmr"] = [
            {"threshold": t, "fmr": imp["fmr"][j], "false_matches": imp["false_matches"][j],
             "ci": imp["interval"][j],
             "upper_95_if_zero": (metrics.wilson(0, imp["pairs"])[1]
                                  if imp["false_matches"][j] == 0 else None)}
            for j, t in enumerate(thresholds)]
        sc = metrics.Scores(np.zeros(0), impostor)
        block["similarity_at_fmr"] = {
            f"{f:g}": (float(sc.threshold_at_fmr(f)) if sc.n_impostor * f >= 1 else None)
            for f in TARGET_FMRS}
        hist["impostor_hist"] = np.histogram(np.clip(impostor, 0, 100), HIST_BINS)[0]
        reps = imp["replicates"]
    if len(set(people)) < len(people):
        # a same-person pair with a photo without a face is a false non-match
        gen = metrics.genuine_rates(sim, people, thresholds, bootstrap, seed, valid=valid)
        block["genuine_pairs"] = gen["pairs"]
        block["genuine_pairs_without_face"] = int((~both[~diff]).sum())
        block["fnmr"] = [{"threshold": t, "fnmr": gen["fnmr"][j],
                          "false_non_matches": gen["false_non_matches"][j],
                          "ci": gen["interval"][j]} for j, t in enumerate(thresholds)]
        hist["genuine_hist"] = np.histogram(np.clip(sim[iu][~diff & both], 0, 100),
                                            HIST_BINS)[0]
        greps = gen["replicates"]
    return block, reps, greps, hist


def _unmeasurable(photos: int, detected: int, people_with_face: np.ndarray) -> str | None:
    """Why a group's false match rate cannot be measured, or None when it can."""
    if detected < 2:
        return (f"{detected} of {photos} photo(s) with a detected face: a false match rate "
                "needs pairs of photos of different people")
    if len(set(people_with_face.tolist())) < 2:
        return "every photo with a detected face is of one person: no different-person pair"
    return None


def _quantiles(x: np.ndarray) -> dict:
    if not len(x):
        return {}
    qs = (0.5, 0.9, 0.99, 0.999, 0.9999)
    return {"mean": float(x.mean()), **{f"q{q:g}": float(np.quantile(x, q)) for q in qs},
            "max": float(x.max())}


#: a differential that could not be measured (fewer than one measurable group)
NO_DIFFERENTIAL = {"max": None, "min": None, "zero_groups": 0, "highest_group": None,
                   "lowest_group": None, "max_over_min": None, "max_over_geomean": None,
                   "max_over_min_interval": None, "max_over_geomean_interval": None}


def _differentials(groups, thresholds, fmr_reps, fnmr_reps) -> list[dict]:
    out = []
    for j, t in enumerate(thresholds):
        rates, reps, names = [], [], []
        for g, r in zip(groups, fmr_reps):
            if g.get("fmr"):
                rates.append(g["fmr"][j]["fmr"])
                reps.append(r[:, j])
                names.append(g["group"])
        d = {**NO_DIFFERENTIAL, **(metrics.differentials(rates, reps) if rates else {})}
        if rates:
            d["highest_group"] = names[int(np.argmax(rates))]
            d["lowest_group"] = names[int(np.argmin(rates))]
        row = {"threshold": t, "promised_fmr": float(fmr_for_similarity(t)), "fmr": d}
        frates = [g["fnmr"][j]["fnmr"] for g in groups if "fnmr" in g]
        if frates:
            freps = [r[:, j] for g, r in zip(groups, fnmr_reps) if "fnmr" in g]
            row["fnmr"] = metrics.differentials(frates, freps)
        out.append(row)
    return out


def _detection_spread(groups) -> dict:
    rates = [g["detection_rate"] for g in groups if g["detection_rate"] is not None]
    if not rates:
        return {"highest": None, "lowest": None, "spread_points": None, "highest_group": None,
                "lowest_group": None}
    hi, lo = max(rates), min(rates)
    return {"highest": hi, "lowest": lo, "spread_points": 100 * (hi - lo),
            "highest_group": groups[int(np.argmax(rates))]["group"],
            "lowest_group": groups[int(np.argmin(rates))]["group"]}


def _guidance(groups, thresholds) -> dict:
    """The lowest Similarity at which every group's FMR is at most each target (where every
    group has enough pairs to show the target rate)."""
    out = {}
    for f in TARGET_FMRS:
        measured = [g for g in groups if g.get("fmr")]
        values = [g["similarity_at_fmr"].get(f"{f:g}") for g in measured]
        if values and all(v is not None for v in values):
            worst = int(np.argmax(values))
            names = [g["group"] for g in measured]
            out[f"{f:g}"] = {"similarity": float(max(values)), "set_by_group": names[worst]}
        else:
            out[f"{f:g}"] = None
    return out
