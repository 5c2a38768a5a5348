"""The CLI and the Python API decide and audit like HTTP: same policy, same ledger."""

from __future__ import annotations

import pytest
from postgres_helper import db_rows
from typer.testing import CliRunner

import candor
from candor.cli import app
from candor.errors import AccessDenied

OBAMA, OBAMA2 = "identities/obama/obama.jpg", "identities/obama/obama2.jpg"


@pytest.fixture()
def env(monkeypatch, candor_home):
    """Keep what ``candor --as ...`` writes into os.environ to this test."""
    for name in ("CANDOR_ORG", "CANDOR_CATEGORY", "CANDOR_POLICY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(candor, "_default", None)
    return candor_home


def rows(home):
    return db_rows(home, "SELECT principal, operation, decision, rule FROM audit_records "
                         "ORDER BY seq")


def test_cli_acts_as_its_principal(env, samples, monkeypatch):
    runner = CliRunner()
    photo = str(samples / OBAMA2)

    def run(org, category, *args):
        monkeypatch.delenv("CANDOR_ORG", raising=False)
        return runner.invoke(app, ["--as", org, "--category", category, "--policy",
                                   "moratorium-2020", *args])

    # each organisation searches its own ``kids`` (tenancy: another's would not be found)
    for org, category in (("ops", "general"), ("thorn", "child_safety"), ("daily-news", "media")):
        assert run(org, category, "collection", "create", "kids").exit_code == 0
    police = run("metro-pd", "law_enforcement", "search", "kids", photo)
    assert police.exit_code == 2 and "police-moratorium-2020" in police.output
    low = run("thorn", "child_safety", "search", "kids", photo, "--threshold", "80")
    assert low.exit_code == 2 and "floor of 99" in low.output
    assert run("thorn", "child_safety", "search", "kids", photo, "--threshold", "99",
               "--json").exit_code == 0
    assert run("daily-news", "media", "search", "kids", photo, "--json").exit_code == 0
    assert [r for r in rows(env) if r[1] == "SearchFacesByImage"] == [
        ("local:metro-pd", "SearchFacesByImage", "deny", "police-moratorium-2020"),
        ("local:thorn", "SearchFacesByImage", "deny", "child-safety-floor"),
        ("local:thorn", "SearchFacesByImage", "allow", "child-safety-floor"),
        ("local:daily-news", "SearchFacesByImage", "allow", "default")]


def test_python_api_acts_as_its_principal(env, samples, monkeypatch):
    monkeypatch.setenv("CANDOR_POLICY", "moratorium-2020")
    monkeypatch.setenv("CANDOR_ORG", "metro-pd")
    monkeypatch.setenv("CANDOR_CATEGORY", "law_enforcement")
    with pytest.raises(AccessDenied, match="moratorium"):
        candor.compare_faces(samples / OBAMA, samples / OBAMA2)

    monkeypatch.setattr(candor, "_default", None)
    monkeypatch.setenv("CANDOR_ORG", "thorn")
    monkeypatch.setenv("CANDOR_CATEGORY", "child_safety")
    with pytest.raises(AccessDenied, match="floor of 99"):
        candor.compare_faces(samples / OBAMA, samples / OBAMA2)
    result = candor.compare_faces(samples / OBAMA, samples / OBAMA2, similarity_threshold=99)
    assert result is not None
    assert rows(env) == [
        ("local:metro-pd", "CompareFaces", "deny", "police-moratorium-2020"),
        ("local:thorn", "CompareFaces", "deny", "child-safety-floor"),
        ("local:thorn", "CompareFaces", "allow", "child-safety-floor")]
