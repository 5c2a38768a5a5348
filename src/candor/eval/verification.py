"""``candor eval verification``: accuracy and error rates on a list of face pairs.

For any pair list: ROC AUC, EER, TAR at FAR 1e-2/1e-3/1e-4 and FMR/FNMR at the Similarity
thresholds users pick (80, 90, 95, 99). Accuracy by the standard protocol of the file: ten
folds with the threshold chosen on the other nine where the file has folds (LFW View 2),
a threshold chosen on ``train_pairs`` where those are given (LFW View 1: pairsDevTrain for
pairsDevTest), and always at the default threshold 80.

A pair list of 1,000 pairs cannot show an FMR of 1e-3, so where the file names people (the
LFW format does) the same metrics are also computed over *all* pairs of its photos: every
same-person pair and every different-person pair (hundreds of thousands to millions), with
bootstrap intervals over people.

Photos without a detected face are counted and reported; their pairs are scored -inf
(a genuine one is a false non-match, an impostor one a correct non-match), never dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from candor.eval import embeddings as emb_mod
from candor.eval import metrics, scoring
from candor.eval.pairs import PairList, read_pairs

THRESHOLDS = (80, 90, 95, 99)
FARS = (1e-2, 1e-3, 1e-4, 1e-5)
DEFAULT_THRESHOLD = 80


def pair_similarities(pl: PairList, index: dict[str, int], emb: emb_mod.Embedded,
                      normalised: bool | None = None) -> np.ndarray:
    """Similarity of each listed pair; -inf where a photo has no face."""
    ia = np.array([index[p.a] for p in pl.pairs], int)
    ib = np.array([index[p.b] for p in pl.pairs], int)
    sims = scoring.to_similarity(scoring.paired_scores(emb.embeddings[ia], emb.embeddings[ib],
                                                       normalised), normalised)
    ok = emb.found[ia] & emb.found[ib]
    return np.where(ok, sims, -np.inf)


def summary(scores: metrics.Scores, thresholds=THRESHOLDS, fars=FARS) -> dict:
    return {
        "genuine_pairs": scores.n_genuine, "impostor_pairs": scores.n_impostor,
        "auc": scores.auc(), "eer": scores.eer(),
        "tar_at_far": [scores.tar_at_far(f) for f in fars],
        "at_threshold": [scores.at(t) for t in thresholds],
    }


def run(pairs_file: str | Path, images: str | Path, *, train_pairs: str | Path | None = None,
        thresholds=THRESHOLDS, fars=FARS, all_pairs: bool = True, bootstrap: int = 200,
        seed: int = 0, normalised: bool | None = None, backend: str | None = None,
        detector: str | None = None, face: str = "centre", data_dir=None,
        workers: int | None = None, use_cache: bool = True,
        progress: Callable[[int, int], None] | None = None) -> dict:
    """Evaluate a pair list; returns the summary (JSON-ready) with a ``plots`` section."""
    images = Path(images)
    test = read_pairs(pairs_file)
    train = read_pairs(train_pairs) if train_pairs else None
    names = sorted(set(test.images) | set(train.images if train else []))
    index = {n: i for i, n in enumerate(names)}
    emb = emb_mod.embed_images([images / n for n in names], backend=backend, detector=detector,
                               face=face, data_dir=data_dir, workers=workers,
                               use_cache=use_cache, progress=progress)
    sims = pair_similarities(test, index, emb, normalised)
    same = np.array([p.same for p in test.pairs])
    missing = [n for n in names if not emb.found[index[n]]]
    test_missing = {n for n in test.images if not emb.found[index[n]]}
    affected = [p for p in test.pairs if p.a in test_missing or p.b in test_missing]
    listed = metrics.Scores(sims[same], sims[~same])

    accuracy: dict = {"at_default_threshold": {
        "threshold": DEFAULT_THRESHOLD,
        "accuracy": metrics.accuracy(sims, same, DEFAULT_THRESHOLD)}}
    if test.folds:
        folds = np.array([p.fold for p in test.pairs])
        accuracy["kfold"] = metrics.kfold_accuracy(sims, same, folds)
        accuracy["protocol"] = f"{accuracy['kfold']['folds']}-fold: threshold chosen on the " \
                               f"other folds"
    if train is not None:
        tsims = pair_similarities(train, index, emb, normalised)
        tsame = np.array([p.same for p in train.pairs])
        t = metrics.best_threshold(tsims, tsame)
        accuracy["train_test"] = {"threshold": t, "train_accuracy": metrics.accuracy(tsims, tsame, t),
                                  "accuracy": metrics.accuracy(sims, same, t),
                                  "train_pairs": len(train.pairs)}
        accuracy.setdefault("protocol", "threshold chosen on the training pairs")
    t_self = metrics.best_threshold(sims, same)
    accuracy["best_threshold_on_these_pairs"] = {
        "threshold": t_self, "accuracy": metrics.accuracy(sims, same, t_self),
        "note": "optimistic: the threshold is chosen on the pairs it is measured on"}

    result: dict = {
        "kind": "verification",
        "pairs_file": str(pairs_file), "train_pairs_file": str(train_pairs) if train_pairs else None,
        "images": str(images), "format": test.format, "folds": test.folds,
        "pairs": len(test.pairs), "same_pairs": int(same.sum()),
        "different_pairs": int((~same).sum()),
        "photos": len(names), "photos_without_face": len(missing),
        "photos_without_face_list": missing[:50],
        "pairs_with_missing_face": {"total": len(affected),
                                    "same": sum(p.same for p in affected),
                                    "different": sum(not p.same for p in affected)},
        "settings": {**emb.settings, "scoring": scoring.scoring_name(normalised)},
        "embedding": {"seconds": round(emb.seconds, 2), "cached_photos": emb.cached},
        "accuracy": accuracy,
        "listed_pairs": summary(listed, thresholds, fars),
    }
    plots = {"listed_pairs": {"curve": listed.curve(), "genuine": _finite(listed.genuine),
                              "impostor": _finite(listed.impostor)}}

    ids = test.identities()
    if all_pairs and ids is not None:
        rows = np.array([index[n] for n in test.images])
        people = [ids[n] for n in test.images]
        sub_found = emb.found[rows]
        g, i, counts = scoring.all_pairs(emb.embeddings[rows], people, sub_found,
                                         normalised=normalised)
        everything = metrics.Scores(scoring.to_similarity(g, normalised),
                                    scoring.to_similarity(i, normalised))
        block = summary(everything, thresholds, fars)
        block.update(counts)
        matrix = scoring.similarity_matrix(emb.embeddings[rows], normalised)
        imp = metrics.impostor_rates(matrix, np.array(people), thresholds, bootstrap, seed,
                                     valid=sub_found)
        gen = metrics.genuine_rates(matrix, np.array(people), thresholds, bootstrap, seed,
                                    valid=sub_found)
        for row, lo_hi, lo_hi_g in zip(block["at_threshold"], imp["interval"], gen["interval"]):
            row["fmr_bootstrap_ci"], row["fnmr_bootstrap_ci"] = lo_hi, lo_hi_g
        block["note"] = ("Every same-person and every different-person pair among the photos "
                         "of the pair list; intervals: bootstrap over people "
                         f"({bootstrap} resamples)")
        result["all_pairs"] = block
        plots["all_pairs"] = {"curve": everything.curve(), "genuine": _finite(everything.genuine),
                              "impostor": _sample(_finite(everything.impostor), 200_000, seed)}
    result["plots"] = plots
    return result


def _finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


def _sample(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(x) <= n:
        return x
    return np.random.default_rng(seed).choice(x, n, replace=False)
