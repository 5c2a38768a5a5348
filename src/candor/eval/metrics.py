"""Error-rate arithmetic shared by every evaluation (numpy only).

Conventions: a *score* is higher for more similar faces (cosine or Similarity); a comparison
*matches* at threshold ``t`` when ``score >= t``. FMR (false match rate, = FAR) is the fraction
of impostor (different-person) comparisons that match; FNMR (false non-match rate, = 1 - TAR)
the fraction of genuine (same-person) comparisons that do not. Comparisons that could not be
made because a photo had no detected face have score ``-inf``: a genuine one counts as a false
non-match, an impostor one as a correct non-match.

Intervals: comparisons sharing a photo are not independent, so the bootstrap resamples
*people* (or photos, when each photo is a different person) and recomputes the rate over all
pairs among the resampled people, as NIST's FRVT demographic report does for its intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


# -- rates from two score sets -----------------------------------------------------------
@dataclass
class Scores:
    """Genuine and impostor scores, kept sorted for fast threshold queries."""

    genuine: np.ndarray
    impostor: np.ndarray

    def __post_init__(self) -> None:
        self.genuine = np.sort(np.asarray(self.genuine, np.float64).ravel())
        self.impostor = np.sort(np.asarray(self.impostor, np.float64).ravel())

    @property
    def n_genuine(self) -> int:
        return len(self.genuine)

    @property
    def n_impostor(self) -> int:
        return len(self.impostor)

    def fmr(self, t):
        """Fraction of impostor scores >= t (vectorised over t)."""
        return _fraction_at_least(self.impostor, t)

    def fnmr(self, t):
        """Fraction of genuine scores < t."""
        return 1.0 - _fraction_at_least(self.genuine, t)

    def false_matches(self, t) -> np.ndarray:
        t = np.asarray(t, np.float64)
        return len(self.impostor) - np.searchsorted(self.impostor, t, side="left")

    def threshold_at_fmr(self, fmr: float) -> float:
        """The lowest threshold whose FMR is at most ``fmr`` (at most floor(fmr * N) impostor
        scores reach it)."""
        n = len(self.impostor)
        allowed = int(math.floor(fmr * n + 1e-9))
        if allowed >= n:
            return -math.inf
        # the (allowed+1)-th highest impostor score must fall below the threshold
        return float(np.nextafter(self.impostor[n - allowed - 1], np.inf))

    def tar_at_far(self, far: float) -> dict:
        """TAR at FAR ``far``: measurable only when the impostor set allows at least one false
        match at that rate (N * far >= 1)."""
        n = len(self.impostor)
        if n == 0 or len(self.genuine) == 0:
            return {"far": far, "tar": None, "threshold": None, "note": "no scores"}
        if n * far < 1:
            return {"far": far, "tar": None, "threshold": None,
                    "note": f"not measurable: {n} impostor pairs cannot show a rate of {far:g} "
                            f"(needs at least {math.ceil(1 / far)})"}
        t = self.threshold_at_fmr(far)
        return {"far": far, "tar": float(1 - self.fnmr(t)), "threshold": t,
                "false_matches_allowed": int(math.floor(far * n + 1e-9))}

    def auc(self) -> float:
        """Area under the ROC curve: P(genuine > impostor) + P(equal) / 2."""
        if not len(self.genuine) or not len(self.impostor):
            return float("nan")
        less = np.searchsorted(self.impostor, self.genuine, side="left")
        leq = np.searchsorted(self.impostor, self.genuine, side="right")
        return float((less + 0.5 * (leq - less)).sum() / (len(self.genuine) * len(self.impostor)))

    def eer(self) -> dict:
        """Equal error rate: where FMR and FNMR cross (their mean at the closest threshold)."""
        if not len(self.genuine) or not len(self.impostor):
            return {"eer": None, "threshold": None}
        finite = np.concatenate([self.genuine, self.impostor])
        finite = finite[np.isfinite(finite)]
        if not len(finite):
            return {"eer": None, "threshold": None}
        quantiles = np.quantile(finite, np.linspace(0, 1, 4001))
        candidates = np.unique(np.concatenate([self.genuine[np.isfinite(self.genuine)],
                                               quantiles]))
        fmr, fnmr = self.fmr(candidates), self.fnmr(candidates)
        i = int(np.argmin(np.abs(fmr - fnmr)))
        return {"eer": float((fmr[i] + fnmr[i]) / 2), "threshold": float(candidates[i]),
                "fmr": float(fmr[i]), "fnmr": float(fnmr[i])}

    def curve(self, points: int = 400) -> dict:
        """FMR and FNMR over thresholds spanning the measurable FMR range (for ROC and DET
        plots): log-spaced in FMR down to one false match, plus every genuine quantile."""
        n = len(self.impostor)
        if not n or not len(self.genuine):
            return {"threshold": [], "fmr": [], "fnmr": []}
        fmrs = np.logspace(0, math.log10(1 / n), points)
        ts = [self.threshold_at_fmr(f) for f in fmrs]
        finite_g = self.genuine[np.isfinite(self.genuine)]
        if len(finite_g):
            ts += list(np.quantile(finite_g, np.linspace(0, 1, points // 2)))
        ts = np.unique(np.asarray([t for t in ts if np.isfinite(t)]))
        return {"threshold": ts.tolist(), "fmr": self.fmr(ts).tolist(),
                "fnmr": self.fnmr(ts).tolist()}

    def at(self, t: float) -> dict:
        """FMR and FNMR at one threshold, with counts and Wilson 95% intervals."""
        fm = int(self.false_matches(t))
        fnm = int(np.searchsorted(self.genuine, t, side="left"))
        return {"threshold": float(t),
                "fmr": fm / len(self.impostor) if len(self.impostor) else None,
                "false_matches": fm, "impostor_pairs": len(self.impostor),
                "fmr_ci": wilson(fm, len(self.impostor)),
                "fnmr": fnm / len(self.genuine) if len(self.genuine) else None,
                "false_non_matches": fnm, "genuine_pairs": len(self.genuine),
                "fnmr_ci": wilson(fnm, len(self.genuine))}


def _fraction_at_least(sorted_scores: np.ndarray, t):
    n = len(sorted_scores)
    if n == 0:
        return np.full(np.shape(t), np.nan) if np.ndim(t) else float("nan")
    below = np.searchsorted(sorted_scores, np.asarray(t, np.float64), side="left")
    return (n - below) / n


# -- accuracy ----------------------------------------------------------------------------
def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the highest accuracy on these pairs (midway between scores)."""
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    values = np.unique(scores[np.isfinite(scores)])
    if not len(values):
        return 0.0
    candidates = np.concatenate([[values[0] - 1], (values[:-1] + values[1:]) / 2, [values[-1] + 1]])
    pos = np.sort(scores[same])
    neg = np.sort(scores[~same])
    tp = len(pos) - np.searchsorted(pos, candidates, side="left")
    tn = np.searchsorted(neg, candidates, side="left")
    return float(candidates[int(np.argmax(tp + tn))])


def accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(((np.asarray(scores) >= threshold) == np.asarray(same, bool)).mean())


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    """The standard protocol: for each fold, the threshold is chosen on the other folds and
    accuracy measured on this one. Mean, standard deviation and standard error over folds."""
    scores, same, folds = np.asarray(scores), np.asarray(same, bool), np.asarray(folds)
    per_fold, thresholds = [], []
    for k in np.unique(folds):
        test = folds == k
        t = best_threshold(scores[~test], same[~test])
        thresholds.append(t)
        per_fold.append(accuracy(scores[test], same[test], t))
    acc = np.array(per_fold)
    return {"folds": len(acc), "mean": float(acc.mean()), "std": float(acc.std(ddof=1)),
            "stderr": float(acc.std(ddof=1) / math.sqrt(len(acc))), "per_fold": acc.tolist(),
            "thresholds": thresholds}


# -- intervals ---------------------------------------------------------------------------
def wilson(k: int, n: int, z: float = Z95) -> list[float] | None:
    """Wilson score 95% interval for a proportion k/n (honest at k = 0)."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half)]


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> list[float | None]:
    """Percentile bootstrap interval (columns = statistics); inf and nan are kept out of
    interpolation: a bound that lands on inf is reported as None (unbounded)."""
    r = np.asarray(replicates, np.float64)
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    if r.ndim == 1:
        r = r[:, None]
    out = []
    for col in r.T:
        col = np.sort(col[~np.isnan(col)])
        if not len(col):
            out.append([None, None])
            continue
        bounds = [col[min(len(col) - 1, int(math.floor(q * (len(col) - 1) + 0.5)))]
                  for q in (lo, hi)]
        out.append([float(b) if np.isfinite(b) else None for b in bounds])
    return out if len(out) > 1 else out[0]


def unit_weights(units: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap multiplicities: (replicates, n_units) counts from resampling units (people)
    with replacement; the first row is all ones (the point estimate)."""
    n = int(units.max()) + 1 if len(units) else 0
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)
    return np.vstack([np.ones((1, n)), w])


def impostor_rates(sim: np.ndarray, units: np.ndarray, thresholds: Sequence[float],
                   replicates: int = 500, seed: int = 0, valid: np.ndarray | None = None,
                   weights: np.ndarray | None = None) -> dict:
    """FMR at each threshold over all pairs of *different* units among the rows of a square
    score matrix ``sim`` (rows where ``valid`` is False take no part), with a bootstrap over
    units. Returns the point rates, pair and false-match counts and the replicates
    (replicates x thresholds) for differentials."""
    n = sim.shape[0]
    units = _dense_ids(units)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    if weights is None:
        weights = unit_weights(units, replicates, np.random.default_rng(seed))
    w_item = weights[:, units] * valid[None, :]          # (B+1, n)
    # denominator: ordered pairs of valid items from different units
    per_unit = np.zeros((int(units.max()) + 1 if n else 0, weights.shape[0]))
    np.add.at(per_unit, units, w_item.T)
    denom = w_item.sum(1) ** 2 - (per_unit ** 2).sum(0)
    m_unit = np.bincount(units[valid], minlength=per_unit.shape[0]).astype(np.float64)
    pairs = int((valid.sum() ** 2 - (m_unit ** 2).sum()) // 2)
    # only pairs that reach the lowest threshold matter for the numerators
    above = np.triu(sim >= min(thresholds), 1) if len(thresholds) else np.zeros((n, n), bool)
    above &= valid[:, None] & valid[None, :]
    rows, cols = np.nonzero(above)
    keep = units[rows] != units[cols]
    rows, cols = rows[keep], cols[keep]
    upper = sim[rows, cols]
    order = np.argsort(-upper, kind="stable")
    rows, cols, upper = rows[order], cols[order], upper[order]
    counts, rates = [], []
    for t in thresholds:
        m = int(np.searchsorted(-upper, -t, side="right"))   # pairs with score >= t
        num = np.zeros(weights.shape[0])
        step = max(1000, 4_000_000 // weights.shape[0])     # bounds the (B, step) temporaries
        for start in range(0, m, step):
            r, c = rows[start:min(m, start + step)], cols[start:min(m, start + step)]
            num += (w_item[:, r] * w_item[:, c]).sum(1)
        counts.append(m)
        rates.append(np.divide(2 * num, denom, out=np.full_like(num, np.nan), where=denom > 0))
    rates = np.array(rates).T                                 # (B+1, T)
    return {"fmr": rates[0].tolist(), "false_matches": counts, "pairs": pairs,
            "replicates": rates[1:], "interval": _intervals(rates[1:], counts, pairs)}


def genuine_rates(sim: np.ndarray, units: np.ndarray, thresholds: Sequence[float],
                  replicates: int = 500, seed: int = 0, valid: np.ndarray | None = None,
                  weights: np.ndarray | None = None) -> dict:
    """FNMR at each threshold over all pairs of photos of the same unit (person); a pair with
    an invalid photo (no face) is a false non-match. Bootstrap over units."""
    units = _dense_ids(units)
    n = sim.shape[0]
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    iu = np.triu_indices(n, 1)
    same = units[iu[0]] == units[iu[1]]
    r, c = iu[0][same], iu[1][same]
    scores = np.where(valid[r] & valid[c], sim[r, c], -np.inf)
    owner = units[r]
    n_units = int(units.max()) + 1 if len(units) else 0
    if weights is None:
        weights = unit_weights(units, replicates, np.random.default_rng(seed + 1))
    pairs_per_unit = np.bincount(owner, minlength=n_units).astype(np.float64)
    denom = weights @ pairs_per_unit
    counts, rates = [], []
    for t in thresholds:
        miss = np.bincount(owner, weights=(scores < t).astype(np.float64), minlength=n_units)
        counts.append(int(miss.sum()))
        rates.append(np.divide(weights @ miss, denom, out=np.full(len(denom), np.nan),
                               where=denom > 0))
    rates = np.array(rates).T
    return {"fnmr": rates[0].tolist(), "false_non_matches": counts, "pairs": len(scores),
            "replicates": rates[1:], "interval": _intervals(rates[1:], counts, len(scores))}


def _intervals(replicates: np.ndarray, counts: list[int], pairs: int) -> list:
    """Bootstrap percentile intervals; where no error was seen every resample sees none, so
    the interval is [0, Wilson upper bound] instead of a meaningless [0, 0]."""
    out = []
    for j, k in enumerate(counts):
        if k == 0:
            out.append([0.0, wilson(0, pairs)[1]] if pairs else [None, None])
        else:
            out.append(percentile_interval(replicates[:, j]))
    return out


def differentials(rates: Sequence[float], replicates: Sequence[np.ndarray] | None = None) -> dict:
    """max/min and max/geometric-mean of per-group rates (NIST FRVT Part 8), with bootstrap
    intervals from per-group replicate arrays (each group resampled independently). A group
    with rate 0 makes both ratios unbounded: reported as None with ``zero_groups``."""
    r = np.asarray(rates, np.float64)
    r = r[~np.isnan(r)]
    out: dict = {"max": float(r.max()) if len(r) else None, "min": float(r.min()) if len(r) else None,
                 "zero_groups": int((r == 0).sum())}
    out["max_over_min"] = _ratio(r, "min")
    out["max_over_geomean"] = _ratio(r, "geomean")
    if replicates is not None and len(replicates):
        rep = np.column_stack([np.asarray(x, np.float64) for x in replicates])  # (B, G)
        for name in ("min", "geomean"):
            vals = np.array([_ratio(row[~np.isnan(row)], name, inf=True) for row in rep])
            out[f"max_over_{name}_interval"] = percentile_interval(vals)
    return out


def _ratio(r: np.ndarray, kind: str, inf: bool = False):
    if not len(r) or r.max() == 0:
        return None if not inf else np.nan
    if (r == 0).any():
        return None if not inf else np.inf
    denom = r.min() if kind == "min" else math.exp(np.log(r).mean())
    return float(r.max() / denom)


def _dense_ids(units) -> np.ndarray:
    units = np.asarray(units)
    if units.dtype.kind in "iu" and (len(units) == 0 or units.min() >= 0):
        _, inv = np.unique(units, return_inverse=True)
        return inv.astype(np.int64)
    _, inv = np.unique(units.astype(str), return_inverse=True)
    return inv.astype(np.int64)
