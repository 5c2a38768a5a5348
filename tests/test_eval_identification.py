"""``candor eval identification`` on a small LFW subset, through IndexFaces and
SearchFacesByImage (the real service path)."""

from __future__ import annotations

import json

import pytest

from candor.eval import identification
from candor.scoring import fpir

GALLERY = ["Colin_Powell", "Jennifer_Lopez", "Paul_Wolfowitz"]
OUTSIDE = ["AJ_Cook", "AJ_Lamas", "Aaron_Guiel", "Aaron_Tippin"]


@pytest.fixture()
def tree(data_dir, tmp_path):
    lfw = data_dir / "lfw"
    if not (lfw / GALLERY[0]).is_dir():
        pytest.skip("LFW View 1 is not in the test data")
    root = tmp_path / "people"
    for who in GALLERY + OUTSIDE:
        photos = sorted((lfw / who).glob("*.jpg"))[: 5 if who in GALLERY else 1]
        (root / who).mkdir(parents=True)
        for p in photos:
            (root / who / p.name).symlink_to(p)
    return root


def test_split_is_nist_style(tree):
    from candor.eval import datasets

    gallery, mated, nonmated = identification.split(datasets.load(tree), 5, 3, 2, seed=0)
    assert sorted(gallery) == sorted(GALLERY) and all(len(v) == 3 for v in gallery.values())
    assert len(mated) == 6 and {w for w, _ in mated} == set(GALLERY)
    assert len(nonmated) == 2 and not {w for w, _ in nonmated} & set(GALLERY)
    with pytest.raises(ValueError):
        identification.split(datasets.load(tree), 3, 3, 2, seed=0)


def test_identification_through_the_service(tree, tmp_path):
    from typer.testing import CliRunner

    from candor.cli import app

    out = tmp_path / "report"
    r = CliRunner().invoke(app, ["eval", "identification", "--images", str(tree), "--non-mated",
                                 "4", "--output", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads((out / "summary.json").read_text())
    assert d["gallery_people"] == 3 and d["gallery_faces"] == 9
    assert d["mated_probes"] == 6 and d["non_mated_probes"] == 4
    assert d["default_threshold"] == fpir.default_search_threshold(9)
    assert d["rank1"] >= 5 / 6                  # well-known faces, clear photos
    assert d["at_default"]["fpir"] == 0.0       # four strangers, a 9-face gallery
    rows = {r["threshold"]: r for r in d["thresholds"]}
    assert rows[99.0]["fnir"] >= rows[80.0]["fnir"]   # stricter: more misses
    html = (out / "report.html").read_text()
    assert "rank-1" in html and "FPIR" in html and "(default)" in html


def test_identification_by_users_counts_the_faces_behind_the_templates(tree, tmp_path):
    """``--users``: every person a user of their 3 faces, searched with SearchUsersByImage; the
    default is the user search's size-aware one, N = the 9 faces behind the 3 templates."""
    from typer.testing import CliRunner

    from candor.cli import app

    out = tmp_path / "report"
    r = CliRunner().invoke(app, ["eval", "identification", "--images", str(tree), "--non-mated",
                                 "4", "--users", "--output", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads((out / "summary.json").read_text())
    assert d["protocol"]["search"] == "SearchUsersByImage"
    assert d["gallery_users"] == 3 and d["fpir_size"] == 9
    assert d["default_threshold"] == fpir.default_search_threshold(fpir.user_search_size(3, 9))
    assert d["rank1"] >= 5 / 6
    assert d["at_default"]["fpir"] == 0.0
    html = (out / "report.html").read_text()
    assert "SearchUsersByImage" in html and "behind the users" in html
