"""Label-free score normalisations compared on cached embeddings (docs/fairness.md, section 6).

Protocol (cross-dataset): every method is fitted on LFW View 1's training photos
(pairsDevTrain, 3,443 photos) or on no labelled data at all, and evaluated on ALL 5,000
FairFace validation photos (race and gender labels used only here) and on LFW pairsDevTest.
Operating points are the per-pair false match rates the code promises at its thresholds
(1e-3 at Similarity 80, 3.2e-4 at 85, 1e-4 at 90), each located on the *fit* data
(LFW training impostor pairs) as a calibration table fitted without FairFace would, and also
on FairFace's own pooled impostors (a table that knows the population: differentials only).

    python bench/fairness_methods.py --data-dir /work/wt/fairness-cache --json /tmp/methods.json

Embeddings come from the eval cache (candor.eval.embeddings; embedded once, seconds after).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from candor.eval import datasets
from candor.eval import embeddings as emb_mod
from candor.scoring import normalisation as fsn

DATA = Path(os.environ.get("CANDOR_TEST_DATA", "../shared/data/faces"))
FMRS = {"80": 1e-3, "85": 10 ** -3.5, "90": 1e-4}


def embed(spec, data_dir):
    s = datasets.load(spec)
    e = emb_mod.embed_images(s.paths, data_dir=data_dir)
    return s, e


# -- methods: each returns a function scores(idx_a, idx_b, which) over one evaluation set ------
def top_mean(x: np.ndarray, cohort: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    out = np.empty(len(x))
    for i in range(0, len(x), 1024):
        s = x[i:i + 1024] @ cohort.T
        if exclude_self:
            s[np.arange(len(s)), np.arange(i, i + len(s))] = -2
        part = np.partition(s, s.shape[1] - k, axis=1)[:, -k:]
        out[i:i + 1024] = part.mean(1)
    return out


class Raw:
    name = "raw cosine"

    def fit(self, ref, ref_ids):
        return self

    def offsets(self, x, own=False):
        return np.zeros(len(x))


class FSN:
    def __init__(self, k, neighbours=5, target=1e-2):
        self.k, self.neighbours, self.target = k, neighbours, target
        self.name = f"FSN k={k} neighbours={neighbours} target={target:g}"

    def fit(self, ref, ref_ids):
        self.norm = fsn.fit(ref, ref_ids, k=self.k, target_fmr=self.target,
                            neighbours=self.neighbours)
        return self

    def offsets(self, x, own=False):
        return self.norm.face_offsets(x)


class Shipped:
    """normalisation-v1 as shipped: fitted on LFW training photos AND FairFace half 1, so only
    its half-2 figures are held out (the in-domain split, reported beside the cross-dataset)."""

    name = "normalisation-v1 as shipped (fit includes FairFace half 1: in-domain on half 2)"

    def fit(self, ref, ref_ids):
        self.norm = fsn.shipped()
        return self

    def offsets(self, x, own_set=None):
        return self.norm.face_offsets(x)


class Cohort:
    """s = cos - (m_i + m_j) / 2 * alpha, m = mean of the top-k cosines against a cohort."""

    def __init__(self, k, alpha=1.0, own=False):
        self.k, self.alpha, self.own = k, alpha, own
        where = "the evaluated set itself (the gallery)" if own else "LFW training photos"
        self.name = f"cohort top-{k} mean, alpha={alpha:g}, cohort = {where}"

    def fit(self, ref, ref_ids):
        self.cohort = ref
        r = top_mean(ref, ref, self.k, exclude_self=True)
        self.centre = float(r.mean())
        return self

    def offsets(self, x, own_set=None):
        if self.own and own_set is not None:
            m = top_mean(x, own_set, self.k, exclude_self=True)
        else:
            m = top_mean(x, self.cohort, self.k)
        return -self.alpha * (m - self.centre) / 2


class Both:
    """Two normalisations' offsets added (e.g. FSN from LFW, then the gallery cohort)."""

    def __init__(self, a, b):
        self.a, self.b, self.own = a, b, True
        self.name = f"{a.name} + {b.name}"

    def fit(self, ref, ref_ids):
        self.a.fit(ref, ref_ids)
        self.b.fit(ref, ref_ids)
        return self

    def offsets(self, x, own_set=None):
        return self.a.offsets(x) + self.b.offsets(x, own_set=own_set)


def pair_scores(e, off, ia, ib):
    return np.einsum("ij,ij->i", e[ia], e[ib]) + off[ia] + off[ib]


def within_group_impostors(e, off, groups, rng_rows=None):
    out = {}
    for g in sorted(set(groups)):
        rows = np.flatnonzero(groups == g) if rng_rows is None else rng_rows[g]
        s = e[rows] @ e[rows].T + off[rows][:, None] + off[rows][None, :]
        out[g] = s[np.triu_indices(len(rows), 1)]
    return out


def all_impostors(e, off, ids, block=1024):
    res = []
    n = len(e)
    for i in range(0, n, block):
        s = e[i:i + block] @ e[i:].T + off[i:i + block, None] + off[None, i:]
        r = np.arange(i, min(n, i + block))[:, None]
        c = np.arange(i, n)[None, :]
        res.append(s[(c > r) & (ids[r] != ids[c])].astype(np.float32))
    return np.concatenate(res)


def threshold_at(imp, f):
    return float(np.quantile(imp, 1 - f))


def ratios(per_group, t):
    rates = {g: float((s >= t).mean()) for g, s in per_group.items()}
    v = np.array(list(rates.values()))
    return rates, (v.max() / v.min() if v.min() > 0 else float("inf"))


def bootstrap_ratio(e, off, groups, t, reps, seed=0):
    rng = np.random.default_rng(seed)
    names = sorted(set(groups))
    full = {g: e[groups == g] @ e[groups == g].T + off[groups == g][:, None] + off[groups == g][None, :]
            for g in names}
    out = []
    for _ in range(reps):
        rates = []
        for g in names:
            n = len(full[g])
            w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            m = (full[g] >= t).astype(float)
            np.fill_diagonal(m, 0)
            pairs = (w.sum() ** 2 - (w ** 2).sum()) / 2
            rates.append((w @ m @ w) / 2 / pairs)
        rates = np.array(rates)
        out.append(rates.max() / rates.min() if rates.min() > 0 else np.inf)
    return [float(np.percentile(out, 2.5)), float(np.percentile(out, 97.5))]


def lfw_accuracy(method, lfw_e, lfw_paths_index, pairs_train, pairs_test, own):
    def scores(pl):
        ia = np.array([lfw_paths_index[p.a] for p in pl.pairs])
        ib = np.array([lfw_paths_index[p.b] for p in pl.pairs])
        same = np.array([p.same for p in pl.pairs])
        return ia, ib, same
    from candor.eval.metrics import accuracy, best_threshold
    off = method.offsets(lfw_e, own_set=lfw_e) if own else method.offsets(lfw_e)
    ia, ib, same = scores(pairs_train)
    st = pair_scores(lfw_e, off, ia, ib)
    t = best_threshold(st, same)
    ia, ib, same2 = scores(pairs_test)
    s2 = pair_scores(lfw_e, off, ia, ib)
    return accuracy(s2, same2, t), off


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--bootstrap", type=int, default=0)
    ap.add_argument("--only", default=None, help="substring of the method names to run")
    ap.add_argument("--part", default="all", choices=["all", "1", "2"],
                    help="FairFace half to evaluate on: 1 to choose a method, 2 to report it")
    args = ap.parse_args()
    from candor.eval.pairs import read_pairs

    train_set, train = embed(DATA / "lfw/pairsDevTrain.txt", args.data_dir)
    ref, ref_ids = train.embeddings[train.found], np.asarray(train_set.identities)[train.found]
    lfw_set, lfw = embed(DATA / "lfw", args.data_dir)
    index = {f: i for i, f in enumerate(lfw_set.files)}
    ptrain, ptest = read_pairs(DATA / "lfw/pairsDevTrain.txt"), read_pairs(DATA / "lfw/pairsDevTest.txt")
    ff_set, ff = embed(DATA / "fairface-val/labels.csv", args.data_dir)
    keep = ff.found.copy()
    if args.part != "all":   # the same split as labels.csv@K/2 (datasets.split, by person)
        import zlib
        k = int(args.part)
        keep &= np.array([zlib.crc32(f.encode()) % 2 == k - 1 for f in ff_set.identities])
    fe = ff.embeddings[keep]
    race = np.asarray(ff_set.groups["race"])[keep]
    gender = np.asarray(ff_set.groups["gender"])[keep]
    ids = np.arange(len(fe))
    print(f"fit: {len(ref)} LFW training faces; evaluate: {len(fe)} FairFace faces", flush=True)

    methods = [Raw(), Shipped(), FSN(100), FSN(25), FSN(10), FSN(100, neighbours=None),
               Cohort(10), Cohort(50), Cohort(50, 0.5), Cohort(10, own=True), Cohort(50, own=True),
               Cohort(50, 0.5, own=True), Cohort(20, own=True), Cohort(100, own=True),
               Both(FSN(100), Cohort(50, own=True)), Both(FSN(25), Cohort(50, own=True)),
               Both(FSN(100), Cohort(20, own=True))]
    if args.only:
        methods = [m for m in methods if args.only in m.name]
    results = []
    for m in methods:
        m.fit(ref, ref_ids)
        off_ref = m.offsets(ref, own_set=ref) if getattr(m, "own", False) else m.offsets(ref)
        ref_imp = all_impostors(ref, off_ref, ref_ids)
        off = m.offsets(fe, own_set=fe) if getattr(m, "own", False) else m.offsets(fe)
        ff_imp = all_impostors(fe, off, ids)
        by_race = within_group_impostors(fe, off, race)
        by_gender = within_group_impostors(fe, off, gender)
        acc, _ = lfw_accuracy(m, lfw.embeddings, index, ptrain, ptest, getattr(m, "own", False))
        row = {"method": m.name, "lfw_accuracy": acc, "points": {}}
        for s, f in FMRS.items():
            for basis, imp in (("lfw-calibrated", ref_imp), ("fairface-pooled", ff_imp)):
                t = threshold_at(imp, f)
                rr, rmax = ratios(by_race, t)
                gr, gmax = ratios(by_gender, t)
                point = {"threshold_score": t, "race_max_over_min": rmax,
                         "gender_max_over_min": gmax, "worst_race_fmr": max(rr.values()),
                         "worst_race": max(rr, key=rr.get), "worst_over_promised": max(rr.values()) / f,
                         "fairface_pooled_fmr": float((ff_imp >= t).mean())}
                if args.bootstrap:
                    point["race_interval"] = bootstrap_ratio(fe, off, race, t, args.bootstrap)
                    point["gender_interval"] = bootstrap_ratio(fe, off, gender, t, args.bootstrap)
                row["points"][f"{s}/{basis}"] = point
        results.append(row)
        p = row["points"]
        print(f"{m.name:70s} LFW {acc:.3f} | " + " | ".join(
            f"{k}: race {v['race_max_over_min']:.1f} gender {v['gender_max_over_min']:.2f} "
            f"worst/promised {v['worst_over_promised']:.1f}" for k, v in p.items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
