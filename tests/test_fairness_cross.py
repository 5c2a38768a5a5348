"""``candor eval fairness --fit-on``: a normalisation and its Similarity tables fitted on one
dataset, evaluated on another, reported beside the in-domain comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

from candor.eval import cross_fit


def test_cross_dataset_report(data_dir, tmp_path):
    from typer.testing import CliRunner

    from candor.cli import app

    labels = data_dir / "fairface-val" / "labels.csv"
    fit_on = data_dir / "lfw" / "pairsDevTest.txt"
    if not labels.exists() or not fit_on.exists():
        pytest.skip("FairFace or LFW View 1 not in the test data")
    out = tmp_path / "report"
    r = CliRunner().invoke(app, [
        "eval", "fairness", "--labels", str(labels), "--limit", "140", "--group-by", "gender",
        "--bootstrap", "20", "--fit-on", f"{fit_on}@1/6", "--workers", "2",
        "--output", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads((out / "summary.json").read_text())
    cross, inside = d["cross_dataset"], d["before_after"]
    assert cross["fitted"]["fit_on"][0]["set"].endswith("pairsDevTest.txt@1/6")
    assert cross["fitted"]["labels_used"].startswith("identities only")
    assert cross["after"].startswith("fitted-on-") and cross["before"].startswith("raw-cosine")
    # the same thresholds measured both ways, and the recommended ones among them
    assert [r["threshold"] for r in cross["groupings"]["gender"]] == \
        [r["threshold"] for r in inside["groupings"]["gender"]]
    assert cross["recommended"]["identification"]["measured"]
    assert "Cross-dataset" in (out / "report.html").read_text()


def test_fitted_scoring_maps_through_its_own_table():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(60, 8))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    from candor.eval.calibration import fit_table
    from candor.eval.metrics import Scores
    from candor.eval.scoring import all_pairs, scoring_name, similarity_matrix

    s = cross_fit.FittedScoring("toy")
    ids = np.arange(60)
    gen, imp, _ = all_pairs(e, ids, np.ones(60, bool), normalised=s)
    s.table = fit_table(Scores(gen, imp), score_name="toy")
    assert scoring_name(s) == "toy"
    sim = similarity_matrix(e, s)
    upper = sim[np.triu_indices(60, 1)]
    # Similarity 70 promises FMR 1e-2 on the data the table was fitted on
    assert abs((upper >= 70).mean() - 1e-2) < 5e-3
