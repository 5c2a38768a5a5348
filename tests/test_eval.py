"""``candor eval`` end to end on subsets of the shared data (a few hundred LFW pairs, a
FairFace slice, the sample identities): the commands, their JSON and HTML, the embedding
cache, and the numbers checked against brute force."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from candor.eval import datasets, embeddings, fairness, metrics

FF_ROWS = 400


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One embedding cache for this module, so the sets are embedded once."""
    return tmp_path_factory.mktemp("eval-data")


def run_cli(cache_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CANDOR_DATA_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-m", "candor.cli", "eval", *args], env=env,
                          capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def lfw(data_dir, tmp_path_factory) -> dict:
    """LFW View 1 subsets: 60+60 test pairs, 60+60 training pairs, and the test pairs again
    as a 10-fold file (6 same + 6 different per fold)."""
    root = data_dir / "lfw"
    if not (root / "pairsDevTest.txt").exists():
        pytest.skip("LFW View 1 not in the test data")
    out = tmp_path_factory.mktemp("lfw-pairs")

    def halves(name):
        lines = (root / name).read_text().split("\n")
        n = int(lines[0])
        return lines[1:61], lines[1 + n:61 + n]

    same, diff = halves("pairsDevTest.txt")
    (out / "test.txt").write_text("60\n" + "\n".join(same + diff) + "\n")
    tsame, tdiff = halves("pairsDevTrain.txt")
    (out / "train.txt").write_text("60\n" + "\n".join(tsame + tdiff) + "\n")
    folds = []
    for k in range(10):
        folds += same[6 * k:6 * k + 6] + diff[6 * k:6 * k + 6]
    (out / "folds.txt").write_text("10\t6\n" + "\n".join(folds) + "\n")
    return {"root": root, "test": out / "test.txt", "train": out / "train.txt",
            "folds": out / "folds.txt", "dir": out}


@pytest.fixture(scope="module")
def fairface(data_dir, tmp_path_factory) -> Path:
    """The first FF_ROWS rows of FairFace's labels, as a labels CSV of their own."""
    labels = data_dir / "fairface-val" / "labels.csv"
    if not labels.exists():
        pytest.skip("FairFace validation set not in the test data")
    rows = labels.read_text().splitlines()[: FF_ROWS + 1]
    sub = tmp_path_factory.mktemp("ff") / "labels.csv"
    sub.write_text("\n".join(rows) + "\n")
    return sub


@pytest.fixture(scope="module")
def ff_images(data_dir) -> Path:
    return data_dir / "fairface-val"


# -- verification ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def verification(lfw, cache_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ver-report")
    proc = run_cli(cache_dir, "verification", "--pairs", str(lfw["test"]), "--train-pairs",
                   str(lfw["train"]), "--images", str(lfw["root"]), "--output", str(out),
                   "--json", "--bootstrap", "50")
    return {"data": json.loads(proc.stdout), "out": out}


def test_verification_reports_accuracy_auc_eer_and_tar_at_far(verification):
    d = verification["data"]
    assert d["pairs"] == 120 and d["same_pairs"] == 60
    acc = d["accuracy"]
    assert acc["train_test"]["train_pairs"] == 120
    assert acc["train_test"]["accuracy"] >= 0.93
    listed = d["listed_pairs"]
    assert listed["auc"] > 0.97 and listed["eer"]["eer"] < 0.08
    far = {r["far"]: r for r in listed["tar_at_far"]}
    # 60 impostor pairs cannot show a rate of 1e-2, let alone 1e-3: said, not invented
    assert far[1e-2]["tar"] is None and "needs at least 100" in far[1e-2]["note"]
    assert far[1e-3]["tar"] is None and "not measurable" in far[1e-3]["note"]
    # all pairs of these photos: thousands of impostor pairs measure 1e-3
    every = d["all_pairs"]
    assert every["impostor_pairs"] > 10_000 and every["genuine_pairs"] >= 60
    far = {r["far"]: r for r in every["tar_at_far"]}
    assert far[1e-3]["tar"] is not None and far[1e-3]["tar"] > 0.5
    row80 = every["at_threshold"][0]
    assert row80["threshold"] == 80
    lo, hi = row80["fmr_bootstrap_ci"]
    assert lo <= row80["fmr"] <= hi
    assert d["settings"]["model_version"] and d["settings"]["scoring"]


def test_verification_report_is_self_contained_html_and_json(verification):
    out = verification["out"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3          # ROC/DET and histograms
    assert not re.search(r"""(src|href)=["']?https?://""", html)  # nothing fetched
    assert "ROC" in html and "Accuracy" in html
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == verification["data"]["accuracy"]
    assert "plots" not in summary and summary["command"].startswith("candor eval verification")


def test_ten_fold_protocol_where_the_file_has_folds(lfw, cache_dir):
    d = json.loads(run_cli(cache_dir, "verification", "--pairs", str(lfw["folds"]), "--images",
                           str(lfw["root"]), "--json", "--listed-only").stdout)
    k = d["accuracy"]["kfold"]
    assert d["folds"] == 10 and k["folds"] == 10 and len(k["thresholds"]) == 10
    assert 0.9 <= k["mean"] <= 1.0 and k["std"] >= 0
    assert "all_pairs" not in d


def test_a_photo_without_a_face_is_counted_never_dropped(lfw, cache_dir, tmp_path):
    from PIL import Image

    images = tmp_path / "imgs"
    line = lfw["test"].read_text().split("\n")[1].split()      # a same-person pair
    a, b = f"{line[0]}/{line[0]}_{int(line[1]):04d}.jpg", f"{line[0]}/{line[0]}_{int(line[2]):04d}.jpg"
    for name in (a, b):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).write_bytes((lfw["root"] / name).read_bytes())
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(images / "blank.png")
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"image_a,image_b,same\n{a},{b},1\n{a},blank.png,1\n{b},blank.png,0\n")
    d = json.loads(run_cli(cache_dir, "verification", "--pairs", str(csv), "--images",
                           str(images), "--json").stdout)
    assert d["pairs"] == 3 and d["photos"] == 3
    assert d["photos_without_face"] == 1 and d["photos_without_face_list"] == ["blank.png"]
    assert d["pairs_with_missing_face"] == {"total": 2, "same": 1, "different": 1}
    row80 = d["listed_pairs"]["at_threshold"][0]
    assert row80["genuine_pairs"] == 2 and row80["false_non_matches"] >= 1


# -- fairness --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ff_runs(fairface, ff_images, cache_dir) -> dict:
    """The same fairness evaluation twice: the second reuses the cached embeddings."""
    kwargs = dict(group_by=["race", "gender"], bootstrap=100, data_dir=cache_dir)
    first = fairness.run(fairface, ff_images, **kwargs)
    second = fairness.run(fairface, ff_images, **kwargs)
    return {"first": first, "second": second}


def test_rerun_reuses_cached_embeddings(ff_runs):
    """Counted, not timed: the second run embeds no photo (every one comes from the cache)."""
    first, second = ff_runs["first"], ff_runs["second"]
    assert first["embedding"]["cached_photos"] < FF_ROWS
    assert second["embedding"]["cached_photos"] == FF_ROWS
    a, b = first["groupings"]["race"], second["groupings"]["race"]
    assert [g["fmr"] for g in a["groups"]] == [g["fmr"] for g in b["groups"]]


def test_fairness_per_group_rates_match_brute_force(ff_runs, fairface, ff_images, cache_dir):
    from candor.scoring.similarity import similarity

    d = ff_runs["first"]
    s = datasets.from_labels(fairface, ff_images)
    emb = embeddings.embed_images(s.paths, data_dir=cache_dir)
    assert d["photos"] == FF_ROWS and d["photos_without_face"] == emb.missing
    race = np.array(s.groups["race"])
    by_race = {g["group"]: g for g in d["groupings"]["race"]["groups"]}
    assert set(by_race) == set(race)
    for name, g in by_race.items():
        rows = np.flatnonzero(race == name)
        assert g["photos"] == len(rows) and g["detected"] == int(emb.found[rows].sum())
        lo, hi = g["detection_ci"]
        assert lo <= g["detection_rate"] <= hi
        ok = rows[emb.found[rows]]
        if len(ok) < 2:
            continue
        sims = similarity(emb.embeddings[ok], emb.embeddings[ok])[np.triu_indices(len(ok), 1)]
        assert g["impostor_pairs"] == len(sims)
        for row in g["fmr"]:
            assert row["false_matches"] == int((sims >= row["threshold"]).sum())
            if row["ci"][0] is not None and row["ci"][1] is not None:
                assert row["ci"][0] <= row["fmr"] <= row["ci"][1]
    diff = d["groupings"]["race"]["differentials"][0]
    rates = [g["fmr"][0]["fmr"] for g in by_race.values() if "fmr" in g]
    assert diff["fmr"]["max"] == pytest.approx(max(rates))
    if min(rates) > 0:
        assert diff["fmr"]["max_over_min"] == pytest.approx(max(rates) / min(rates))
    assert set(d["groupings"]["gender"]["detection"]) >= {"spread_points", "lowest_group"}


def test_fairness_cli_writes_json_and_html_with_per_group_intervals(fairface, ff_images,
                                                                    cache_dir, tmp_path):
    out = tmp_path / "report"
    proc = run_cli(cache_dir, "fairness", "--labels", str(fairface), "--images",
                   str(ff_images), "--group-by", "race,race+gender",
                   "--bootstrap", "50", "--output", str(out), "--json")
    d = json.loads(proc.stdout)
    assert set(d["groupings"]) == {"race", "race+gender"}
    assert any(" / " in g["group"] for g in d["groupings"]["race+gender"]["groups"])
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6
    assert "max / min" in html and "Detection" in html
    bad = run_cli(cache_dir, "fairness", "--labels", str(fairface), "--images",
                  str(ff_images), "--group-by", "eye_colour", check=False)
    assert bad.returncode == 2 and "eye_colour" in bad.stderr


def test_fairness_with_a_group_too_small_to_measure_says_so(ff_images, cache_dir, tmp_path):
    """A group of one photo cannot give a false match rate: the run completes, the JSON and
    the page say which group was not measured and why, and the other groups are measured."""
    rows = [f"{i}.jpg,{'big' if i <= 5 else 'mid' if i <= 8 else 'solo'}" for i in range(1, 10)]
    labels = tmp_path / "labels.csv"
    labels.write_text("file,team\n" + "\n".join(rows) + "\n")
    out = tmp_path / "report"
    proc = run_cli(cache_dir, "fairness", "--labels", str(labels), "--images", str(ff_images),
                   "--group-by", "team", "--bootstrap", "20", "--output", str(out))
    assert "not measured: solo" in proc.stdout, proc.stdout  # the table printed, not a crash
    d = json.loads((out / "summary.json").read_text())
    groups = {g["group"]: g for g in d["groupings"]["team"]["groups"]}
    assert groups["solo"]["photos"] == 1 and groups["solo"]["fmr"] is None
    assert "pairs of photos" in groups["solo"]["not_measured"]
    assert d["not_measured"] == [{"grouping": "team", "group": "solo", "photos": 1,
                                  "reason": groups["solo"]["not_measured"]}]
    assert groups["big"]["fmr"] is not None and groups["big"]["impostor_pairs"] >= 1
    html = (out / "report.html").read_text()
    assert "Not measured" in html and "not measured: " in html
    # the thresholds candor uses are always measured, also in the before/after section
    from candor.scoring.similarity import IDENTIFICATION_THRESHOLD, VERIFICATION_THRESHOLD

    assert {VERIFICATION_THRESHOLD, IDENTIFICATION_THRESHOLD} <= set(d["thresholds"])
    if "before_after" in d:
        ba = d["before_after"]
        assert ba["recommended"]["identification"]["similarity"] == IDENTIFICATION_THRESHOLD
        assert IDENTIFICATION_THRESHOLD in {r["threshold"] for r in ba["groupings"]["team"]}


def test_fairness_on_person_folders_measures_fnmr(samples, cache_dir, tmp_path):
    people = sorted(p.name for p in (samples / "identities").iterdir() if p.is_dir())
    labels = tmp_path / "people.csv"
    labels.write_text("person,kind\n" + "".join(
        f"{p},{'unnamed' if p.startswith('person_') else 'named'}\n" for p in people))
    d = fairness.run(labels, samples / "identities", group_by=["kind"], bootstrap=50,
                     data_dir=cache_dir, face="largest")
    groups = {g["group"]: g for g in d["groupings"]["kind"]["groups"]}
    assert d["has_genuine_pairs"] and set(groups) == {"named", "unnamed"}
    s = datasets.load(labels, samples / "identities")
    ids = np.array(s.identities)
    kinds = np.array(s.groups["kind"])
    for name, g in groups.items():
        mine = ids[kinds == name]
        expected = sum(int(n * (n - 1) // 2) for n in np.unique(mine, return_counts=True)[1])
        assert g["genuine_pairs"] == expected
        fnmr = {r["threshold"]: r["fnmr"] for r in g["fnmr"]}
        assert fnmr[80.0] <= fnmr[90.0] <= fnmr[99.0]     # stricter thresholds miss more
    assert "fnmr" in d["groupings"]["kind"]["differentials"][0]


# -- calibration -----------------------------------------------------------------------------
def test_calibrate_fits_checks_and_installs_a_table(fairface, ff_images, cache_dir, tmp_path):
    table_file = tmp_path / "tables.json"
    out = tmp_path / "cal"
    ref = f"{fairface}@1/2"
    held = f"{fairface}@2/2"
    proc = run_cli(cache_dir, "calibrate", "-r", ref, "-c", held, "--images",
                   str(ff_images), "--write-table", str(table_file),
                   "--output", str(out), "--bootstrap", "50", "--json")
    d = json.loads(proc.stdout)
    scoring = d["settings"]["scoring"]          # raw-cosine, or the score normalisation's name
    assert d["table"]["score"] == scoring
    table = json.loads(table_file.read_text())["tables"][scoring]
    knots = np.asarray(table["knots"])
    assert np.all(np.diff(knots[:, 0]) > 0) and np.all(np.diff(knots[:, 1]) > 0)
    assert table["provenance"]["command"].startswith("candor eval calibrate")
    assert table["provenance"]["reference"][0]["set"] == ref
    checks = {c["name"]: c for c in d["checks"]}
    assert checks[held]["held_out"] and not checks[ref]["held_out"]
    fitted = {r["similarity"]: r for r in checks[ref]["rows"]}
    assert fitted[80]["fmr"] <= 1e-3                       # the promise holds where fitted
    # a few hundred photos cannot measure 1e-5: the table and the check say so
    n_pairs = checks[held]["impostor_pairs"]
    assert n_pairs < 100_000
    assert not {r["similarity"]: r for r in checks[held]["rows"]}[99]["resolvable"]
    assert not {r["similarity"]: r for r in table["rows"]}[99.0]["measured"]
    assert "data:image/png;base64," in (out / "report.html").read_text()
    # the engine maps scores with whichever table CANDOR_SIMILARITY_TABLE names (read once,
    # into the settings a service builds its scoring from)
    code = ("from candor.service import Service; "
            "print(Service().scoring.score_for(80))")
    env = {**os.environ, "CANDOR_SIMILARITY_TABLE": str(table_file)}
    used = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, check=True).stdout)
    assert used == pytest.approx(float(np.interp(80, knots[:, 1], knots[:, 0])))


def test_splits_are_disjoint_by_person_and_stable(samples):
    s = datasets.from_folder(samples / "identities")
    a = datasets.load(f"{samples / 'identities'}@1/2")
    b = datasets.load(f"{samples / 'identities'}@2/2")
    assert len(a) + len(b) == len(s) and len(a) and len(b)
    assert not set(a.identities) & set(b.identities)
    assert datasets.load(f"{samples / 'identities'}@1/2").files == a.files


def test_metrics_on_real_scores_agree_with_numpy(verification):
    # the ROC curve in the plots is monotone: FMR falls and FNMR rises with the threshold
    d = verification["data"]
    rows = d["all_pairs"]["at_threshold"]
    assert [r["threshold"] for r in rows] == [80, 90, 95, 99]
    assert all(a["fmr"] >= b["fmr"] and a["fnmr"] <= b["fnmr"] for a, b in zip(rows, rows[1:]))
    assert metrics.wilson(rows[0]["false_matches"], rows[0]["impostor_pairs"]) == \
        pytest.approx(rows[0]["fmr_ci"])
