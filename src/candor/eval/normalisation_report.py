"""Before/after score normalisation, side by side, for ``candor eval fairness``.

The fairness evaluation runs twice on the same embeddings: with raw cosines (each scoring maps
to Similarity through its own calibrated table, so a threshold promises the same false match
rate in both columns) and with the shipped score normalisation. For each grouping and each
Similarity threshold this module lines up the highest group FMR, the max/min and
max/geometric-mean differentials with their bootstrap intervals, and whether the differential
targets hold; and it states candor's recommended thresholds for identification (1:N) and
verification (1:1) with the measured rows behind them (see docs/fairness.md for how they were
chosen). The HTML section is ``templates/eval_normalisation.html.j2``, rendered by
:mod:`candor.eval.report`.
"""
from __future__ import annotations

from candor.scoring.fpir import default_search_threshold
from candor.scoring.similarity import IDENTIFICATION_THRESHOLD, VERIFICATION_THRESHOLD

#: differential targets (max/min of group FMR): issue 8's acceptance, 3x across race groups
#: and 1.5x across genders; any other grouping is held to the looser one
TARGETS = {"gender": 1.5}
DEFAULT_TARGET = 3.0
#: candor's recommendations are the thresholds the code uses (candor.scoring.similarity, the one
#: owner): verification at the CompareFaces default, identification at the search default. The
#: fairness evaluation always measures both (fairness.run adds them to the thresholds).
#: A search that names no threshold runs at a size-aware default (candor.scoring.fpir: FPIR <= 1%
#: for the collection's size, never below the identification floor); the report measures it at
#: these collection sizes too, under ``identification_N_faces``.
SEARCH_SIZES = (100, 1000)
RECOMMENDED = {"verification": VERIFICATION_THRESHOLD, "identification": IDENTIFICATION_THRESHOLD,
               **{f"identification_{n}_faces": default_search_threshold(n) for n in SEARCH_SIZES}}


def target_for(spec: str) -> float:
    return TARGETS.get(spec, DEFAULT_TARGET)


def _row(d: dict | None) -> dict:
    f = (d or {}).get("fmr") or {}
    return {"max": f.get("max"), "highest_group": f.get("highest_group"),
            "max_over_min": f.get("max_over_min"),
            "max_over_min_interval": f.get("max_over_min_interval"),
            "max_over_geomean": f.get("max_over_geomean"),
            "max_over_geomean_interval": f.get("max_over_geomean_interval")}


def _meets(row: dict, target: float) -> bool | None:
    if row["max"] is None:
        return None
    return row["max_over_min"] is not None and row["max_over_min"] <= target


def compare(before: dict, after: dict) -> dict:
    """The side-by-side summary of two fairness results (same photos, same thresholds)."""
    out: dict = {"before": before["settings"]["scoring"], "after": after["settings"]["scoring"],
                 "targets": {spec: target_for(spec) for spec in after["groupings"]},
                 "groupings": {}, "recommended": {}}
    for spec, g in after["groupings"].items():
        b = before["groupings"].get(spec, {})
        by_t = {r["threshold"]: r for r in b.get("differentials", [])}
        rows = []
        for r in g["differentials"]:
            ra, rb = _row(r), _row(by_t.get(r["threshold"]))
            rows.append({"threshold": r["threshold"], "promised_fmr": r.get("promised_fmr"),
                         "before": {**rb, "meets_target": _meets(rb, target_for(spec))},
                         "after": {**ra, "meets_target": _meets(ra, target_for(spec))}})
        out["groupings"][spec] = rows
    for kind, t in RECOMMENDED.items():
        measured = {spec: next((r for r in rows if r["threshold"] == t), None)
                    for spec, rows in out["groupings"].items()}
        held = [r["after"]["meets_target"] for r in measured.values() if r is not None]
        out["recommended"][kind] = {
            "similarity": t, "measured": {s: r for s, r in measured.items() if r is not None},
            "targets_hold": (all(held) if held else None)}
    return out
