"""Is the size-aware search default's FPIR model right, and on which population? (issue 16)

The default search threshold (:mod:`candor.scoring.fpir`) assumes FPIR(S, N) = 1 - (1 - F(S))^N
with F(S) the Similarity table's per-pair promise and N the collection's faces. On LFW it is
conservative (``candor eval identification``: FPIR 0 of 500 at the default for 243 faces).
This bench asks why, on cached embeddings (candor.eval.embeddings; nothing is re-embedded when
the cache is warm), and whether the reason holds on another dataset:

1. **The formula on FairFace galleries** (distinct people): random
   galleries of N faces, the other FairFace faces as non-mated probes: measured FPIR vs the
   formula. No LFW photo is used. 1b: the FPIR model fitted on FairFace alone (its pooled
   per-pair impostor FMR instead of the table's promise), its default for N faces, evaluated
   on LFW in 2.
2. **Evaluated on LFW's identification split** (``candor.eval.identification.split``: 81 people
   x 3 photos, 229 mated and 500 non-mated probes, emulated on the cached centre-face
   embeddings): measured FPIR / FNIR vs the formula, and LFW's per-pair FMR vs the promise.
3. **Photos vs people**: does a person with k photos in the gallery raise a stranger's false
   alarm chance k-fold (independent photos, what counting faces assumes) or about once
   (counting people)? r(k) = P(any of k photos >= S) / P(one photo >= S), measured with LFW
   people *outside* the identification split (>= 3 photos, not among the 500 non-mated probes)
   as the gallery, and LFW (outside the split) or FairFace faces as probes.
4. **The reverse fit**: a per-pair model fitted on LFW outside the split (its measured FMR)
   applied to FairFace galleries: how far it would under-promise there.
5. **Gallery cohort normalisation for search** (docs/fairness.md section 6): each score less
   the mean of the two faces' top-10 cosines with the gallery, mapped to Similarity by a table
   fitted on FairFace galleries only; evaluated on LFW's split.
6. **Users** (SearchUsersByImage's templates, the unit mean of a user's faces): N = users is
   one comparison per person, but is a template's per-pair FMR the promised one?

    nice -n 10 python bench/fpir_calibration.py --data-dir DIR [--json out.json]
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
LEVELS = (85.0, 88.0, 89.07, 90.0, 91.0, 92.0, 93.0, 93.46, 95.0)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lfw = datasets.load(DATA / "lfw")
    le = emb_mod.embed_images(lfw.paths, data_dir=args.data_dir)
    ff = datasets.load(DATA / "fairface-val/labels.csv")
    fe = emb_mod.embed_images(ff.paths, data_dir=args.data_dir)
    out: dict = {"cached": {"lfw": le.cached, "fairface": fe.cached}}
    ffx = fe.embeddings[fe.found]
    sf = sc.similarity_matrix(ffx)
    np.fill_diagonal(sf, -np.inf)

    # 1. FairFace galleries of distinct people
    out["fairface_galleries"] = {}
    for n in (81, 243, 1000):
        hits = {t: [] for t in LEVELS}
        for _ in range(args.reps):
            p = rng.permutation(len(ffx))
            top = sf[np.ix_(p[n:], p[:n])].max(1)
            for t in LEVELS:
                hits[t].append(float(np.mean(top >= t)))
        out["fairface_galleries"][n] = {t: {"measured": float(np.mean(v)), "formula": F.fpir(t, n)}
                                        for t, v in hits.items()}
        print(f"FairFace N={n}: " + ", ".join(f"{t:g}: {v['measured']:.4f} (formula {v['formula']:.4f})"
                                              for t, v in out["fairface_galleries"][n].items()))

    # 1b. the FPIR model fitted on FairFace alone (no LFW photo): FairFace's pooled per-pair
    # impostor FMR (all pairs of distinct people) in place of the table's promise, N independent
    iu = np.triu_indices(len(ffx), 1)
    ff_imp = np.sort(sf[iu])
    def ff_threshold(n: int) -> float:
        per_pair = -np.expm1(np.log1p(-F.TARGET_FPIR) / n)
        return float(ff_imp[int(np.ceil(len(ff_imp) * (1 - per_pair)))])
    out["fairface_fitted_default"] = {n: {"threshold": ff_threshold(n), "formula_default":
                                          F.default_search_threshold(n)} for n in (81, 243)}
    print("FPIR model fitted on FairFace (pooled per-pair FMR): default " + ", ".join(
        f"N={n}: {v['threshold']:.2f} (formula {v['formula_default']})"
        for n, v in out["fairface_fitted_default"].items()))

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
                                       "promised_fmr": F.false_match_rate(t)}
    print(f"LFW split ({n} faces, default {F.default_search_threshold(n)}):")
    for t, r in out["lfw_split"]["rows"].items():
        print(f"  {t:g}: FNIR {r['fnir']:.3f} FPIR {r['fpir']:.4f} formula {r['formula']:.4f}"
              f"  per-pair FMR {r['per_pair_fmr']:.1e} (promised {r['promised_fmr']:.1e})")

    ffd = out["fairface_fitted_default"][243]["threshold"]
    out["lfw_split"]["at_fairface_fitted_default"] = {
        "threshold": ffd, "fnir": float(np.mean(mate < ffd)), "fpir": float(np.mean(top >= ffd))}
    print("  at the FairFace-fitted default:", out["lfw_split"]["at_fairface_fitted_default"])

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
                                 "fairface_measured_243": out["fairface_galleries"][243][t]["measured"]}
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
                "promised": F.false_match_rate(t)}
    tg = np.stack([template(ge[gp == w]) for w in gallery])
    people = list(gallery)
    su, snu = sims(le.embeddings[mi], tg), sims(le.embeddings[ni], tg)
    mate_u = np.array([su[k][people.index(w)] if le.found[mi[k]] else -1.0 for k, (w, _) in enumerate(mated)])
    top_u = np.where(le.found[ni], snu.max(1), -1.0)
    for t in LEVELS:
        out["user_templates"]["lfw_split"][t] = {"fnir": float(np.mean(mate_u < t)),
                                                 "fpir": float(np.mean(top_u >= t)),
                                                 "formula": F.fpir(t, len(people))}
    print("user templates, per-pair FMR outside the split:",
          json.dumps(out["user_templates"]["outside_split"]))
    print(f"users on LFW split ({len(people)} users, default {F.default_search_threshold(len(people))}): "
          + ", ".join(f"{t:g}: FNIR {v['fnir']:.3f} FPIR {v['fpir']:.4f} (formula {v['formula']:.4f})"
                      for t, v in out["user_templates"]["lfw_split"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
