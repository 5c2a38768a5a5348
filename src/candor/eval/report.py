"""Reports: a JSON summary for machines and a self-contained HTML page for people.

The HTML (``candor/templates/eval_*.html.j2``) has no external references: the plots
(matplotlib) are embedded as base64 PNG, the style is inline, so the file can be mailed,
archived or opened offline.
"""

from __future__ import annotations

import base64
import io
import json
import math
from html import escape
from pathlib import Path

import numpy as np

from candor import __version__, clock
from candor.templates import render
from candor.templates.filters import fmt_pct, short_name

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


# -- JSON --------------------------------------------------------------------------------
def jsonable(value):
    """Plain JSON types: numpy scalars and arrays become numbers and lists; inf and nan
    become null (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


def summary(result: dict) -> dict:
    """The result without its plot data, JSON-ready."""
    out = {k: v for k, v in result.items() if k != "plots"}
    out.setdefault("candor_version", __version__)
    return jsonable(out)


def write(result: dict, output: str | Path, command: str | None = None) -> dict[str, Path]:
    """``summary.json`` and ``report.html`` in ``output``; returns their paths."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    data = summary(result)
    if command:
        data["command"] = command
    data["generated"] = clock.stamp()
    paths = {"json": output / "summary.json", "html": output / "report.html"}
    paths["json"].write_text(json.dumps(data, indent=2) + "\n")
    paths["html"].write_text(html(result, data))
    return paths


# -- plots -------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _floor(values, n):
    """Values for a log axis: zeros become half of the smallest measurable rate."""
    v = np.asarray(values, np.float64)
    return np.where(v > 0, v, 0.5 / max(n, 1))


def roc_det(curves: dict[str, dict], thresholds_at: dict[str, list[dict]] | None = None) -> str:
    """ROC (TAR vs FMR) and DET (FNMR vs FMR), log axes, one line per curve."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for (name, c), colour in zip(curves.items(), COLOURS):
        fmr, fnmr = np.asarray(c["fmr"]), np.asarray(c["fnmr"])
        keep = fmr > 0
        ax1.plot(fmr[keep], 1 - fnmr[keep], color=colour, label=name)
        keep2 = keep & (fnmr > 0)
        ax2.plot(fmr[keep2], fnmr[keep2], color=colour, label=name)
        for row in (thresholds_at or {}).get(name, []):
            if row.get("fmr") and row.get("fnmr") is not None and row["fmr"] > 0:
                ax1.plot(row["fmr"], 1 - row["fnmr"], "o", color=colour, ms=4)
                ax1.annotate(f"{row['threshold']:g}", (row["fmr"], 1 - row["fnmr"]),
                             textcoords="offset points", xytext=(4, -10), fontsize=7,
                             color=colour)
                if row["fnmr"] > 0:
                    ax2.plot(row["fmr"], row["fnmr"], "o", color=colour, ms=4)
                    ax2.annotate(f"{row['threshold']:g}", (row["fmr"], row["fnmr"]),
                                 textcoords="offset points", xytext=(4, 2), fontsize=7,
                                 color=colour)
    ax1.set(xscale="log", xlabel="false match rate (FMR)", ylabel="true match rate (TAR)",
            title="ROC (dots: Similarity thresholds)")
    ax2.set(xscale="log", yscale="log", xlabel="false match rate (FMR)",
            ylabel="false non-match rate (FNMR)", title="DET")
    for ax in (ax1, ax2):
        ax.legend(loc="lower right" if ax is ax1 else "upper right", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def histograms(genuine: np.ndarray | None, impostor: np.ndarray,
               thresholds=(80, 90, 95, 99), title: str = "Similarity scores") -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    bins = np.linspace(0, 100, 101)
    ax.hist(np.clip(impostor, 0, 100), bins, density=True, alpha=0.6, color=COLOURS[1],
            label=f"different people ({len(impostor):,} pairs)")
    if genuine is not None and len(genuine):
        ax.hist(np.clip(genuine, 0, 100), bins, density=True, alpha=0.6, color=COLOURS[0],
                label=f"same person ({len(genuine):,} pairs)")
    for t in thresholds:
        ax.axvline(t, color="k", lw=0.8, ls=":")
    both = np.concatenate([np.asarray(impostor, np.float64),
                           np.asarray(genuine if genuine is not None else [], np.float64)])
    both = both[np.isfinite(both)]
    low = max(0.0, math.floor(np.quantile(both, 0.001)) - 5) if len(both) else 0.0
    ax.set(yscale="log", xlabel="Similarity", ylabel="density (log)", title=title,
           xlim=(low, 100.5))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return _png(fig)


def group_bars(groups: list[dict], thresholds, promised: dict | None, title: str,
               key: str = "fmr") -> str:
    """Per group FMR (or FNMR) at each threshold with interval whiskers, log scale."""
    plt = _plt()
    rows = [g for g in groups if g.get(key)]  # groups too small to measure have none
    names = [g["group"] for g in rows]
    if not names:
        return ""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / len(thresholds)
    x = np.arange(len(names))
    floor_n = min(g.get("impostor_pairs" if key == "fmr" else "genuine_pairs", 1) for g in rows)
    for j, (t, colour) in enumerate(zip(thresholds, COLOURS)):
        vals = np.array([g[key][j][key] for g in rows], np.float64)
        lo = np.array([(g[key][j]["ci"] or [None, None])[0] or 0 for g in rows], np.float64)
        hi = np.array([(g[key][j]["ci"] or [None, None])[1] or 0 for g in rows], np.float64)
        shown = _floor(vals, floor_n)
        err = np.vstack([np.maximum(0, shown - _floor(lo, floor_n)),
                         np.maximum(0, _floor(hi, floor_n) - shown)])
        pos = x - 0.4 + width * (j + 0.5)
        ax.bar(pos, shown, width, color=colour, alpha=0.85, label=f"Similarity {t:g}")
        ax.errorbar(pos, shown, yerr=err, fmt="none", ecolor="k", elinewidth=0.8, capsize=2)
        zero = vals == 0
        if zero.any():
            ax.plot(pos[zero], shown[zero], "v", color="k", ms=3)
        if promised and key == "fmr":
            ax.hlines(promised[str(t)] if str(t) in promised else promised.get(f"{t:g}"),
                      -0.5, len(names) - 0.5, colors=colour, linestyles="--", lw=0.8)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set(yscale="log", ylabel=key.upper() + " (log)", title=title)
    ax.legend(fontsize=7, ncol=len(thresholds), loc="upper center",
              bbox_to_anchor=(0.5, -0.28))
    fig.tight_layout()
    return _png(fig)


def detection_bars(groups: list[dict], title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 2.8))
    names = [g["group"] for g in groups]
    rates = np.array([g["detection_rate"] or 0 for g in groups])
    ci = np.array([g["detection_ci"] or [0, 0] for g in groups])
    ax.bar(names, 100 * rates, color=COLOURS[0], alpha=0.85)
    ax.errorbar(names, 100 * rates, yerr=100 * np.vstack([rates - ci[:, 0], ci[:, 1] - rates]),
                fmt="none", ecolor="k", capsize=3, elinewidth=0.8)
    for i, r in enumerate(rates):
        ax.annotate(f"{100 * r:.1f}%", (i, 100 * r), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7)
    ax.set(ylim=(0, 109), ylabel="faces detected (%)", title=title)
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return _png(fig)


def group_distributions(hists: dict[str, dict], thresholds, title: str) -> str:
    """Survival curves of impostor Similarity per group: P(impostor >= s)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.4))
    edges = np.linspace(0, 100, 101)
    for (name, h), colour in zip(hists.items(), COLOURS):
        counts = np.asarray(h["impostor_hist"], np.float64)
        if counts.sum() == 0:
            continue
        surv = counts[::-1].cumsum()[::-1] / counts.sum()
        keep = surv > 0
        ax.step(edges[:-1][keep], surv[keep], where="post", color=colour, label=name)
    for t in thresholds:
        ax.axvline(t, color="k", lw=0.8, ls=":")
    ax.set(yscale="log", xlabel="Similarity s", ylabel="share of impostor pairs ≥ s",
           title=title, xlim=(40, 100))
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return _png(fig)


def calibration_plot(table: dict, checks: dict[str, list[dict]],
                     curves: dict[str, dict] | None = None) -> str:
    """Promised FMR F(S) against the measured FMR of each set, by Similarity."""
    plt = _plt()
    from candor.eval.calibration import fmr_for_similarity

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    s = np.linspace(53, 100, 300)
    ax1.plot(s, fmr_for_similarity(s), "k--", lw=1.2, label="promised F(S)")
    ax1.fill_between(s, fmr_for_similarity(s) / 3, fmr_for_similarity(s) * 3, color="k",
                     alpha=0.07, label="within a factor of 3")
    for (name, c), colour in zip((curves or {}).items(), COLOURS):
        sim, fmr = np.asarray(c["similarity"]), np.asarray(c["fmr"])
        keep = fmr > 0
        ax1.plot(sim[keep], fmr[keep], color=colour, label=short_name(name))
        for row in checks.get(name, []):
            if row["fmr"]:
                ax1.plot(row["similarity"], row["fmr"], "o", color=colour, ms=4)
    ax1.set(yscale="log", xlabel="Similarity", ylabel="false match rate",
            title="Calibration: promised vs measured FMR", xlim=(53, 100))
    ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    knots = np.asarray(table["knots"])
    inner = knots[1:-1]
    ax2.plot(inner[:, 0], inner[:, 1], color=COLOURS[0])
    for level in (80, 90, 99):
        score = np.interp(level, knots[:, 1], knots[:, 0])
        ax2.plot(score, level, "o", color="k", ms=4)
        ax2.annotate(f"{level}: score {score:.4f}", (score, level), textcoords="offset points",
                     xytext=(-100, 4), fontsize=7)
    ax2.set(xlabel=f"score ({table['score']})", ylabel="Similarity",
            title="The table: score → Similarity")
    fig.tight_layout()
    return _png(fig)


# -- HTML --------------------------------------------------------------------------------
def html(result: dict, data: dict) -> str:
    kind = result["kind"]
    if kind == "verification":
        body, title = _verification(result, data), "Verification accuracy"
    elif kind == "calibration":
        body, title = _calibration(result, data), "Similarity calibration"
    elif kind == "fairness":
        body, title = _fairness(result, data), "Demographic differentials"
    elif kind == "identification":
        body, title = render("eval_identification.html.j2", d=data), "Identification (1:N)"
    else:
        raise ValueError(f"unknown report kind {kind!r}")
    return render("eval_page.html.j2", d=data, title=f"candor eval: {title}", body=body)


def _verification(result: dict, d: dict) -> str:
    blocks = [("Listed pairs", d["listed_pairs"])]
    if "all_pairs" in d:
        blocks.append(("All pairs of these photos", d["all_pairs"]))
    main = d.get("all_pairs") or d["listed_pairs"]
    a = d["accuracy"]
    acc = (a.get("kfold", {}).get("mean") or a.get("train_test", {}).get("accuracy")
           or a["at_default_threshold"]["accuracy"])
    tar = {r["far"]: r["tar"] for r in main["tar_at_far"]}
    key = [("accuracy (" + a.get("protocol", "at Similarity 80") + ")", fmt_pct(acc)),
           ("AUC", f"{main['auc']:.4f}"), ("EER", fmt_pct(main["eer"]["eer"])),
           ("TAR @ FAR 1e-3", fmt_pct(tar.get(1e-3))),
           ("photos without a face", str(d["photos_without_face"]))]
    p = result["plots"]
    curves = {"listed pairs": p["listed_pairs"]["curve"]}
    at = {"listed pairs": d["listed_pairs"]["at_threshold"]}
    hists = [("listed pairs", histograms(p["listed_pairs"]["genuine"], p["listed_pairs"]["impostor"],
                                         title="Similarity of the listed pairs"))]
    if "all_pairs" in p:
        curves["all pairs"] = p["all_pairs"]["curve"]
        at["all pairs"] = d["all_pairs"]["at_threshold"]
        hists.append(("all pairs", histograms(p["all_pairs"]["genuine"], p["all_pairs"]["impostor"],
                                              title="Similarity of all pairs of these photos "
                                                    "(impostors: a random sample)")))
    figs = {"curves": roc_det(curves, at), "hists": hists}
    return render("eval_verification.html.j2", d=d, a=a, blocks=blocks, key=key, figs=figs)


def _calibration(result: dict, d: dict) -> str:
    p = result["plots"]
    notes = {"max": "every Similarity level promises the highest FMR of any reference set",
             "mean": "the FMR averaged over reference sets, each weighted equally",
             "pooled": "the FMR over all reference pairs together"}
    figs = {"calibration": calibration_plot(d["table"], {c["name"]: c["rows"] for c in d["checks"]},
                                            p.get("curves")),
            "hists": [(name, histograms(h["genuine"], h["impostor"],
                                        title=f"Similarity: {short_name(name)}"))
                      for name, h in p.get("hists", {}).items()]}
    rows = [r for r in d["table"]["rows"] if float(r["similarity"]) % 5 == 0
            or r["similarity"] in (99, 99.0)]
    return render("eval_calibration.html.j2", d=d, figs=figs, rows=rows,
                  combine_note=notes.get(d["table"]["combine"], ""))


def _fairness(result: dict, d: dict) -> str:
    figs = {}
    groupings = []
    for spec, g in d["groupings"].items():
        groups = g["groups"]
        g = dict(g, has_fnmr=any("fnmr" in x for x in groups))
        groupings.append((spec, g))
        figs[spec] = {
            "detection": detection_bars(groups, f"Faces detected by {spec}"),
            "fmr": group_bars(groups, d["thresholds"], d["promised_fmr"],
                              f"FMR within each {spec} group (dashed: what the Similarity "
                              f"table promises; ▼: no false match)"),
            "fnmr": group_bars(groups, d["thresholds"], None, f"FNMR by {spec}", key="fnmr")
            if g["has_fnmr"] else "",
            "dist": group_distributions(result["plots"][spec], d["thresholds"],
                                        f"Impostor Similarity within each {spec} group"),
        }
    body = render("eval_fairness.html.j2", d=d, groupings=groupings, figs=figs)
    comparison = d.get("before_after")
    if comparison:  # score normalisation on: before/after side by side
        rec = {r["similarity"]: kind for kind, r in comparison["recommended"].items()}
        body += render("eval_normalisation.html.j2", c=comparison, rec=rec)
    cross = d.get("cross_dataset")
    if cross:  # fitted on other data: reported beside the in-domain comparison
        rec = {r["similarity"]: kind for kind, r in cross["recommended"].items()}
        body += ("<h2>Cross-dataset: normalisation and tables fitted on "
                 f"{escape(', '.join(x['set'] for x in cross['fitted']['fit_on']))} only</h2>")
        body += render("eval_normalisation.html.j2", c=cross, rec=rec)
    return body
