"""candor.eval arithmetic without photos: error rates, intervals, differentials, pair lists,
the calibration table and the shipped Similarity mapping."""

from __future__ import annotations

import itertools
import json
import math
from importlib import resources

import numpy as np
import pytest

from candor.errors import InvalidParameter
from candor.eval import calibration, metrics, pairs
from candor.scoring import similarity as sim


# -- rates ---------------------------------------------------------------------------------
def test_rates_and_thresholds_against_brute_force():
    rng = np.random.default_rng(3)
    gen, imp = rng.normal(2, 1, 500), rng.normal(0, 1, 20_000)
    sc = metrics.Scores(gen, imp)
    for t in (-1.0, 0.5, 1.7, 3.0):
        assert sc.fmr(t) == pytest.approx((imp >= t).mean())
        assert sc.fnmr(t) == pytest.approx((gen < t).mean())
    for f in (1e-1, 1e-2, 1e-3):
        t = sc.threshold_at_fmr(f)
        assert (imp >= t).sum() <= math.floor(f * len(imp))
        # the threshold is the lowest such: just below it one more impostor matches
        assert (imp >= np.nextafter(t, -np.inf)).sum() > math.floor(f * len(imp))
    # AUC is P(genuine > impostor): brute force on a subsample
    g, i = gen[:200], imp[:2000]
    brute = ((g[:, None] > i[None, :]).mean() + 0.5 * (g[:, None] == i[None, :]).mean())
    assert metrics.Scores(g, i).auc() == pytest.approx(brute)


def test_eer_of_mirrored_distributions_is_where_they_cross():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 200_000)
    eer = metrics.Scores(x + 2, -x - 2 + 2).eer()    # genuine N(2,1), impostor N(0,1)
    # analytic: threshold 1, rate = P(N(0,1) >= 1) = 0.1587
    assert eer["eer"] == pytest.approx(0.1587, abs=0.004)
    assert eer["threshold"] == pytest.approx(1.0, abs=0.03)


def test_tar_at_far_refuses_rates_the_data_cannot_show():
    sc = metrics.Scores(np.linspace(0, 1, 100), np.linspace(-1, 0.5, 500))
    assert sc.tar_at_far(1e-2)["tar"] is not None
    r = sc.tar_at_far(1e-3)
    assert r["tar"] is None and "not measurable" in r["note"] and "1000" in r["note"]


def test_missing_faces_count_as_non_matches():
    sc = metrics.Scores(np.array([0.9, -np.inf]), np.array([0.1, -np.inf]))
    row = sc.at(0.5)
    assert row["fnmr"] == 0.5 and row["fmr"] == 0.0 and row["false_non_matches"] == 1


def test_kfold_accuracy_chooses_each_threshold_on_the_other_folds():
    # fold 0's pairs sit on a different scale: a threshold fitted on folds 1-9 gets them wrong
    rng = np.random.default_rng(1)
    folds = np.repeat(np.arange(10), 40)
    same = np.tile(np.r_[np.ones(20, bool), np.zeros(20, bool)], 10)
    scores = np.where(same, rng.uniform(0.6, 1.0, 400), rng.uniform(0.0, 0.4, 400))
    scores[folds == 0] -= 0.5
    out = metrics.kfold_accuracy(scores, same, folds)
    assert out["folds"] == 10 and len(out["per_fold"]) == 10
    assert all(a == 1.0 for a in out["per_fold"][1:])
    assert out["per_fold"][0] < 0.8                       # not chosen on its own pairs
    assert 0.1 < out["thresholds"][1] < 0.6
    assert out["mean"] == pytest.approx(np.mean(out["per_fold"]))


def test_wilson_interval():
    lo, hi = metrics.wilson(0, 1000)
    assert lo == 0 and hi == pytest.approx(0.00383, abs=2e-5)   # 95% upper bound near 3.84/n
    lo, hi = metrics.wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert metrics.wilson(0, 0) is None


def _brute_fmr(s, people, valid, t):
    n = len(s)
    hits = total = 0
    for i, j in itertools.combinations(range(n), 2):
        if people[i] != people[j] and valid[i] and valid[j]:
            total += 1
            hits += s[i, j] >= t
    return hits / total, hits, total


def test_impostor_and_genuine_rates_match_brute_force_and_bootstrap_brackets_them():
    rng = np.random.default_rng(5)
    n = 60
    people = np.repeat(np.arange(20), 3)
    e = rng.normal(size=(n, 8)) + 2.5 * rng.normal(size=(20, 8))[people]
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    s = e @ e.T
    valid = np.ones(n, bool)
    valid[[4, 17]] = False
    thresholds = [0.3, 0.6, 0.9]
    imp = metrics.impostor_rates(s, people, thresholds, replicates=300, seed=1, valid=valid)
    gen = metrics.genuine_rates(s, people, thresholds, replicates=300, seed=1, valid=valid)
    for j, t in enumerate(thresholds):
        rate, hits, total = _brute_fmr(s, people, valid, t)
        assert imp["fmr"][j] == pytest.approx(rate) and imp["false_matches"][j] == hits
        assert imp["pairs"] == total
        lo, hi = imp["interval"][j]
        assert lo <= rate <= hi
        g_pairs = [(i, k) for i, k in itertools.combinations(range(n), 2) if people[i] == people[k]]
        misses = sum(not (valid[i] and valid[k]) or s[i, k] < t for i, k in g_pairs)
        assert gen["fnmr"][j] == pytest.approx(misses / len(g_pairs))
    assert imp["replicates"].shape == (300, 3)
    # intervals narrow as the threshold falls and false matches become common
    assert imp["interval"][0][1] - imp["interval"][0][0] > 0


def test_differentials_and_unbounded_ratios():
    d = metrics.differentials([1e-3, 4e-3, 2e-3])
    assert d["max_over_min"] == pytest.approx(4.0)
    assert d["max_over_geomean"] == pytest.approx(4e-3 / (8e-9) ** (1 / 3))
    z = metrics.differentials([0.0, 1e-3])
    assert z["max_over_min"] is None and z["zero_groups"] == 1
    reps = [np.full(100, 1e-3), np.linspace(1e-3, 3e-3, 100)]
    ci = metrics.differentials([1e-3, 2e-3], reps)["max_over_min_interval"]
    assert 1.0 <= ci[0] < 2.0 < ci[1] <= 3.0


# -- pair lists ------------------------------------------------------------------------------
def test_lfw_pairs_with_and_without_folds(tmp_path):
    p = tmp_path / "pairs.txt"
    p.write_text("2\t2\nA\t1\t2\nB\t1\t3\nA\t1\tC\t1\nB\t2\tD\t4\n"
                 "E\t1\t2\nF\t1\t2\nE\t1\tG\t1\nF\t2\tH\t1\n")
    pl = pairs.read_pairs(p)
    assert pl.folds == 2 and len(pl.pairs) == 8
    assert [x.fold for x in pl.pairs] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert pl.pairs[0].a == "A/A_0001.jpg" and pl.pairs[0].same
    assert pl.pairs[3].b == "D/D_0004.jpg" and not pl.pairs[3].same
    assert pl.identities()["C/C_0001.jpg"] == "C"
    one = tmp_path / "one.txt"
    one.write_text("1\nA\t1\t2\nA\t1\tC\t1\n")
    assert read_folds(one) == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("3\nA\t1\t2\n")
    with pytest.raises(InvalidParameter, match="promises 6 pairs"):
        pairs.read_pairs(bad)


def read_folds(path):
    return pairs.read_pairs(path).folds


def test_csv_pairs(tmp_path):
    p = tmp_path / "pairs.csv"
    p.write_text("image_a,image_b,same\nx/1.jpg,x/2.jpg,1\nx/1.jpg,y/1.jpg,false\n")
    pl = pairs.read_pairs(p)
    assert pl.format == "csv" and [x.same for x in pl.pairs] == [True, False]
    assert pl.identities() is None
    p.write_text("image_a,image_b,same\nx/1.jpg,x/2.jpg,maybe\n")
    with pytest.raises(InvalidParameter, match="same"):
        pairs.read_pairs(p)


# -- calibration -------------------------------------------------------------------------------
def test_rate_scale_anchors_and_the_engine_agree():
    for s, f in ((60, 1e-1), (70, 1e-2), (80, 1e-3), (90, 1e-4), (99, 1e-5)):
        assert float(calibration.fmr_for_similarity(s)) == pytest.approx(f)
        assert sim.false_match_rate(s) == pytest.approx(f)
        assert float(calibration.similarity_for_fmr(f)) == pytest.approx(s)
    grid = np.linspace(50, 100, 201)
    assert np.all(np.diff(calibration.fmr_for_similarity(grid)) < 0)


def test_fitted_table_keeps_its_promise_on_fresh_impostors_from_the_same_population():
    rng = np.random.default_rng(11)
    fit = metrics.Scores(rng.normal(3, 1, 5000), rng.normal(0, 1, 3_000_000))
    table = calibration.fit_table(fit, score_range=(-10, 10))
    knots = np.asarray(table["knots"])
    assert np.all(np.diff(knots[:, 0]) > 0) and np.all(np.diff(knots[:, 1]) > 0)
    to_sim = calibration.table_similarity(table)
    fresh = metrics.Scores(rng.normal(3, 1, 5000), rng.normal(0, 1, 3_000_000))
    rows = calibration.check_table(table, fresh, to_sim, levels=(80, 90, 99))
    for row in rows:
        assert row["within_factor_3"] and 0.6 < row["ratio"] < 1.6, row
    # analytic: FMR 1e-3 of N(0,1) is at 3.09
    assert np.interp(80, knots[:, 1], knots[:, 0]) == pytest.approx(3.09, abs=0.05)


def test_combining_reference_sets():
    rng = np.random.default_rng(2)
    easy = metrics.Scores(np.zeros(0), rng.normal(0, 1, 400_000))
    hard = metrics.Scores(np.zeros(0), rng.normal(0.5, 1, 400_000))
    t_max = calibration.combined_threshold([easy, hard], 1e-3, "max")
    t_mean = calibration.combined_threshold([easy, hard], 1e-3, "mean")
    assert t_max == pytest.approx(hard.threshold_at_fmr(1e-3))
    assert easy.fmr(t_max) <= 1e-3 and hard.fmr(t_max) <= 1e-3
    assert np.mean([easy.fmr(t_mean), hard.fmr(t_mean)]) <= 1e-3
    assert easy.threshold_at_fmr(1e-3) < t_mean < t_max


SHIPPED = json.loads((resources.files("candor") / "data" / sim.TABLE_FILE).read_text())


@pytest.mark.parametrize("scoring", sorted(SHIPPED["tables"]))
def test_shipped_tables_are_monotone_documented_and_land_80_90_99_on_their_rates(scoring):
    t = SHIPPED["tables"][scoring]
    assert t["score"] == scoring and t["provenance"]["command"]
    assert {"reference", "settings"} <= set(t["provenance"])
    knots = np.asarray(t["knots"])
    assert np.all(np.diff(knots[:, 0]) > 0) and np.all(np.diff(knots[:, 1]) > 0)
    assert knots[0][1] == 0 and knots[-1][1] == 100
    rows = {r["similarity"]: r for r in t["rows"]}
    for s, f in ((80, 1e-3), (90, 1e-4), (99, 1e-5)):
        row = rows[s]
        assert row["fmr"] == pytest.approx(f) and row["measured"]
        # on the set that decides the threshold the measured rate is the promised one
        worst = max(v["fmr"] for v in row["sets"].values())
        assert f / 1.2 <= worst <= f
        assert float(sim.similarity_from_score(row["score"], scoring)) == pytest.approx(s)
    grid = np.linspace(knots[0][0], knots[-1][0], 2001)
    mapped = sim.similarity_from_score(grid, scoring)
    assert np.all(np.diff(mapped) > 0) and mapped[0] == 0 and mapped[-1] == 100
    for level in (50, 80, 90.5, 99, 99.9):
        back = sim.similarity_from_score(sim.score_for_similarity(level, scoring), scoring)
        assert float(back) == pytest.approx(level, abs=1e-6)


def test_the_raw_cosine_table_spans_every_cosine():
    knots = np.asarray(sim.table(sim.RAW)["knots"])
    assert knots[0].tolist() == [-1.0, 0.0] and knots[-1].tolist() == [1.0, 100.0]


def test_installing_a_table_keeps_other_scorings(tmp_path):
    path = tmp_path / "tables.json"
    rng = np.random.default_rng(0)
    sc = metrics.Scores(rng.normal(3, 1, 100), rng.normal(0, 1, 200_000))
    calibration.install_table(calibration.fit_table(sc, score_name="raw-cosine"), path)
    calibration.install_table(calibration.fit_table(sc, score_name="fsn-test"), path)
    doc = json.loads(path.read_text())
    assert set(doc["tables"]) == {"raw-cosine", "fsn-test"}
