"""The size-aware search default's FPIR model: its fit, and checks on data it never saw (issue 16)

The default search threshold (:mod:`candor.scoring.fpir`) is the lowest Similarity S at which
FPIR(S, N) = 1 - (1 - G(S))^N stays <= 1% for a collection of N faces, G(S) the per-pair false
match rate of different people. Until this fit G was the Similarity table's promise F(S),
which is FairFace half 1's impostor rate, and those "impostors" include photos of the same
person (FairFace is not one photo per person: ``bench/fpir-fairface-same-person.json``, every
pair of half 1 at Similarity >= 92 reviewed by eye). On cached embeddings
(candor.eval.embeddings; nothing is re-embedded when the cache is warm):

0. **The fit** (``--knots``): G measured on FairFace half 1 with one photo kept of each person
   seen twice; prints :data:`candor.scoring.fpir.SEARCH_FMR`. No LFW photo, no half-2 photo.
1. **Independence and held-out FairFace**: random galleries of N faces, the other faces as
   non-mated probes, measured max-of-N FPIR vs the formula: on the fit set (is the
   independent-comparisons model right?) and on FairFace half 2, which the fit never saw
   (with the photos of people seen twice there removed as in the fit set, and as is).
2. **Evaluated on LFW's identification split** (``candor.eval.identification.split``: 81 people
   x 3 photos, 229 mated and 500 non-mated probes, emulated on the cached centre-face
   embeddings): measured FPIR / FNIR vs the formula, and LFW's per-pair FMR vs G and F.
   Nothing is chosen here.
3. **Photos vs people**: does a person with k photos in the gallery raise a stranger's false
   alarm chance k-fold (independent photos, what counting faces assumes) or about once
   (counting people)? r(k) = P(any of k photos >= S) / P(one photo >= S), measured with LFW
   people *outside* the identification split (>= 3 photos, not among the 500 non-mated probes)
   as the gallery, and LFW (outside the split) or FairFace faces as probes.
4. **The reverse fit**: a per-pair model fitted on LFW outside the split (its measured FMR)
   applied to FairFace half-2 galleries: how far it would under-promise there.
5. **Gallery cohort normalisation for search** (docs/fairness.md section 6): each score less
   the mean of the two faces' top-10 cosines with the gallery, mapped to Similarity by a table
   fitted on FairFace galleries only; evaluated on LFW's split.
6. **Users** (SearchUsersByImage's templates, the unit mean of a user's faces): N = users is
   one comparison per person, but is a template's per-pair FMR the modelled one?

    nice -n 10 python bench/fpir_calibration.py --data-dir DIR [--json out.json] [--knots]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from candor.eval import datasets
from candor.eval import embeddings as emb_mod
from candor.eval import identification as ident
from candor.eval import scoring as sc
from candor.scoring import fpir as F

DATA = Path(os.environ.get("CANDOR_TEST_DATA", "../shared/data/faces"))
LEVELS = (85.0, 88.0, 89.07, 90.0, 91.0, 91.34, 92.0, 93.0, 93.46, 95.0)
SAME_PERSON = Path(__file__).with_name("fpir-fairface-same-person.json")
KNOTS = np.arange(80.0, 96.51, 0.5)


def distinct_people(files: list[str]) -> np.ndarray:
    """Mask of the photos to keep: one photo (the first by name) of each group of photos that
    the review judged to show one person (the groups are the connected pairs)."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.get(a, a) != a:
            a = parent[a]
        return a
    rows = json.loads(SAME_PERSON.read_text())["pairs"]
    for _, a, b, _, judgement in rows:
        if judgement == "same":
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    drop = {f for f in {x for r in rows for x in r[1:3]} if find(f) != f}
    return np.array([Path(f).name not in drop for f in files])


def max_of_n(probes_gallery: np.ndarray, n: int, reps: int, rng) -> dict:
    """Random galleries of ``n`` faces from a square Similarity matrix, every other face as a
    non-mated probe: the measured FPIR (mean over draws) and the formula's, per level."""
    hits: dict[float, list[float]] = {t: [] for t in LEVELS}
    for _ in range(reps):
        p = rng.permutation(len(probes_gallery))
        top = probes_gallery[np.ix_(p[n:], p[:n])].max(1)
        for t in LEVELS:
            hits[t].append(float(np.mean(top >= t)))
    return {t: {"measured": float(np.mean(v)), "formula": F.fpir(t, n)} for t, v in hits.items()}
K = 10


def sims(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return sc.to_similarity(sc.pair_score(a, b))


def top_mean(x: np.ndarray, cohort: np.ndarray, k: int = K, self_in_cohort: bool = False) -> np.ndarray:
    s = x @ cohort.T
    if self_in_cohort:
        np.fill_diagonal(s, -2)
    return np.partition(s, s.shape[1] - k, axis=1)[:, -k:].mean(1)


def cohort_scores(probes: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    mg = top_mean(gallery, gallery, self_in_cohort=True)
    mp = top_mean(probes, gallery)
    return probes @ gallery.T - (mp[:, None] + mg[None, :]) / 2


def fit_knots(h1: np.ndarray) -> list[tuple[float, float]]:
    """G(S) on the fit set's pairs of different people: (Similarity, rate) at every knot."""
    s = sc.similarity_matrix(h1)
    v = s[np.triu_indices(len(h1), 1)]
    return [(float(t), float(f"{np.mean(v >= t):.3g}")) for t in KNOTS]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--json")
    ap.add_argument("--knots", action="store_true",
                    help="print the fitted G(S) (candor.scoring.fpir.SEARCH_FMR) and stop")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    # the fit set: FairFace half 1, one photo per person
    h1s = datasets.load(DATA / "fairface-val/labels.csv@1/2")
    h1e = emb_mod.embed_images(h1s.paths, data_dir=args.data_dir)
    keep = h1e.found & distinct_people([str(p) for p in h1s.paths])
    h1 = h1e.embeddings[keep]
    pairs = len(h1) * (len(h1) - 1) // 2
    print(f"fit set: FairFace half 1, {int(h1e.found.sum())} faces, {len(h1)} after removing "
          f"photos of people seen twice; {pairs} pairs")
    if args.knots:
        knots = fit_knots(h1)
        print("SEARCH_FMR = (\n" + "".join(f"    ({t:.1f}, {g:.2e}),\n" for t, g in knots) + ")")
        return
    out: dict = {"fit": {"faces": len(h1), "pairs": pairs, "knots": fit_knots(h1),
                         "shipped": list(F.SEARCH_FMR)}}
    lfw = datasets.load(DATA / "lfw")
    le = emb_mod.embed_images(lfw.paths, data_dir=args.data_dir)
    h2s = datasets.load(DATA / "fairface-val/labels.csv@2/2")
    h2e = emb_mod.embed_images(h2s.paths, data_dir=args.data_dir)
    out["cached"] = {"lfw": le.cached, "fairface_half2": h2e.cached}
    ffx = h2e.embeddings[h2e.found]           # FairFace probes below: half 2, never fitted on
    h2 = h2e.embeddings[h2e.found & distinct_people([str(p) for p in h2s.paths])]

    # 1. max-of-N on galleries of the fit set (independence) and of held-out half 2
    for name, faces in (("fit_set", h1), ("fairface_half2", h2), ("fairface_half2_as_is", ffx)):
        sf = sc.similarity_matrix(faces)
        np.fill_diagonal(sf, -np.inf)
        out[f"galleries_{name}"] = {}
        for n in (81, 243, 1000):
            r = max_of_n(sf, n, args.reps, rng)
            out[f"galleries_{name}"][n] = r
            print(f"{name} N={n}: " + ", ".join(
                f"{t:g}: {v['measured']:.4f} (formula {v['formula']:.4f})" for t, v in r.items()))

    # 2. LFW identification split
    idx = {f: i for i, f in enumerate(lfw.files)}
    gallery, mated, nonmated = ident.split(lfw, 5, 3, 500, 0)
    gi = [idx[f] for fs in gallery.values() for f in fs if le.found[idx[f]]]
    gp = np.array([lfw.identities[i] for i in gi])
    ge = le.embeddings[gi]
    mi = [idx[f] for _, f in mated]
    ni = [idx[f] for _, f in nonmated]
    sm, sn = sims(le.embeddings[mi], ge), sims(le.embeddings[ni], ge)
    mate = np.array([sm[k][gp == w].max() if le.found[mi[k]] else -1.0 for k, (w, _) in enumerate(mated)])
    top = np.where(le.found[ni], sn.max(1), -1.0)
    n = len(gi)
    out["lfw_split"] = {"gallery_faces": n, "people": len(gallery), "rows": {}}
    for t in LEVELS:
        out["lfw_split"]["rows"][t] = {"fnir": float(np.mean(mate < t)), "fpir": float(np.mean(top >= t)),
                                       "formula": F.fpir(t, n),
                                       "per_pair_fmr": float(np.mean(sn[le.found[ni]] >= t)),
                                       "modelled_fmr": F.search_false_match_rate(t),
                                       "table_fmr": F.false_match_rate(t)}
    print(f"LFW split ({n} faces, default {F.default_search_threshold(n)}):")
    for t, r in out["lfw_split"]["rows"].items():
        print(f"  {t:g}: FNIR {r['fnir']:.3f} FPIR {r['fpir']:.4f} formula {r['formula']:.4f}"
              f"  per-pair FMR {r['per_pair_fmr']:.1e} (G {r['modelled_fmr']:.1e}, "
              f"table {r['table_fmr']:.1e})")

    # 3. photos vs people, LFW people outside the split
    excluded = set(gallery) | {w for w, _ in nonmated}
    by: dict[str, list[int]] = {}
    for i, w in enumerate(lfw.identities):
        if w not in excluded and le.found[i]:
            by.setdefault(w, []).append(i)
    multi = [sorted(v)[:3] for v in by.values() if len(v) >= 3]
    single = [v[0] for v in by.values() if len(v) < 3]
    g3 = le.embeddings[[i for v in multi for i in v]]
    out["photos_vs_people"] = {"gallery_people": len(multi), "rows": {}}
    for name, probes in (("lfw", le.embeddings[single]), ("fairface", ffx)):
        s3 = sims(probes, g3).reshape(len(probes), len(multi), 3)
        for t in (80.0, 85.0, 88.0, 90.0):
            one = float(np.mean(s3[:, :, 0] >= t))
            r2 = float(np.mean(s3[:, :, :2].max(2) >= t)) / one if one else None
            r3 = float(np.mean(s3.max(2) >= t)) / one if one else None
            out["photos_vs_people"]["rows"][f"{name}@{t:g}"] = {"fmr_one_photo": one, "r2": r2, "r3": r3}
            print(f"photos vs people, {name} probes, {t:g}: FMR {one:.1e}  r(2) {r2:.2f}  r(3) {r3:.2f}")
        # 4. the reverse fit: LFW-outside per-pair FMR as the model, FairFace galleries measured
        if name == "lfw":
            fmr_lfw = {t: float(np.mean(s3[:, :, 0] >= t)) for t in LEVELS}
    out["reverse_fit"] = {}
    for t in LEVELS:
        model = 1 - (1 - fmr_lfw[t]) ** 243
        out["reverse_fit"][t] = {"lfw_model_fpir_243": model,
                                 "fairface_measured_243": out["galleries_fairface_half2"][243][t]["measured"]}
    print("reverse fit (LFW per-pair model, N=243) vs FairFace measured: " + ", ".join(
        f"{t:g}: {v['lfw_model_fpir_243']:.4f} vs {v['fairface_measured_243']:.4f}"
        for t, v in out["reverse_fit"].items()))

    # 5. gallery cohort for search: table fitted on FairFace galleries of 243, evaluated on LFW
    imp = []
    for _ in range(args.reps):
        p = rng.permutation(len(ffx))
        imp.append(cohort_scores(ffx[p[243:]], ffx[p[:243]]).ravel())
    imp = np.sort(np.concatenate(imp))
    thr = {t: float(np.quantile(imp, 1 - F.false_match_rate(t))) for t in LEVELS}
    cm = cohort_scores(le.embeddings[mi], ge)
    cn = cohort_scores(le.embeddings[ni], ge)
    mate_c = np.array([cm[k][gp == w].max() if le.found[mi[k]] else -9 for k, (w, _) in enumerate(mated)])
    top_c = np.where(le.found[ni], cn.max(1), -9)
    out["gallery_cohort"] = {t: {"fnir": float(np.mean(mate_c < thr[t])),
                                 "fpir": float(np.mean(top_c >= thr[t]))} for t in LEVELS}
    print("gallery cohort (table fitted on FairFace galleries) on LFW split: " + ", ".join(
        f"{t:g}: FNIR {v['fnir']:.3f} FPIR {v['fpir']:.4f}" for t, v in out["gallery_cohort"].items()))
    # 6. users (identity-level templates: the unit mean of a user's faces, store.users.unit_mean):
    # one comparison per person, so N = users; does a template's per-pair FMR keep the promise?
    def template(v: np.ndarray) -> np.ndarray:
        m = v.mean(0)
        return m / np.linalg.norm(m)
    t3 = np.stack([template(le.embeddings[v]) for v in multi])
    out["user_templates"] = {"outside_split": {}, "lfw_split": {}}
    for name, probes in (("lfw", le.embeddings[single]), ("fairface", ffx)):
        st, s1 = sims(probes, t3), sims(probes, g3[::3])
        for t in (85.0, 89.07, 90.0):
            out["user_templates"]["outside_split"][f"{name}@{t:g}"] = {
                "template_fmr": float(np.mean(st >= t)), "one_photo_fmr": float(np.mean(s1 >= t)),
                "modelled": F.search_false_match_rate(t), "table": F.false_match_rate(t)}
    tg = np.stack([template(ge[gp == w]) for w in gallery])
    people = list(gallery)
    su, snu = sims(le.embeddings[mi], tg), sims(le.embeddings[ni], tg)
    mate_u = np.array([su[k][people.index(w)] if le.found[mi[k]] else -1.0 for k, (w, _) in enumerate(mated)])
    top_u = np.where(le.found[ni], snu.max(1), -1.0)
    for t in LEVELS:
        out["user_templates"]["lfw_split"][t] = {"fnir": float(np.mean(mate_u < t)),
                                                 "fpir": float(np.mean(top_u >= t)),
                                                 "formula": F.fpir(t, n)}
    print("user templates, per-pair FMR outside the split:",
          json.dumps(out["user_templates"]["outside_split"]))
    print(f"users on LFW split ({len(people)} users, N = {n} faces, "
          f"default {F.default_search_threshold(n)}): "
          + ", ".join(f"{t:g}: FNIR {v['fnir']:.3f} FPIR {v['fpir']:.4f} (formula {v['formula']:.4f})"
                      for t, v in out["user_templates"]["lfw_split"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
