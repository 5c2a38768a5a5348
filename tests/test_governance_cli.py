"""The operator's commands, run through the real ``candor`` CLI app."""

from __future__ import annotations

import json

import pytest
from postgres_helper import store_url
from sqlalchemy import update
from typer.testing import CliRunner

from candor.cli import app
from candor.governance.ledger import Ledger
from candor.store import open_store
from candor.store.schema import audit_records as T

runner = CliRunner()


@pytest.fixture()
def home(tmp_path):
    store = open_store(tmp_path / "data", store_url())
    ledger = Ledger.for_store(store)
    for i in range(4):
        ledger.append(operation="SearchFacesByImage", org="metro-pd" if i % 2 else "thorn",
                      category="law_enforcement" if i % 2 else "child_safety",
                      decision="deny" if i % 2 else "allow", threshold=99,
                      rule="police-moratorium-2020" if i % 2 else "child-safety-floor",
                      matches=None if i % 2 else [{"FaceId": f"f{i}", "Similarity": 99.3}])
    return tmp_path / "data", store


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_audit_verify_tail_search(home):
    data, store = home
    ok = run("audit", "verify", "--data-dir", data)
    assert ok.exit_code == 0 and "4 records, chain intact" in ok.output
    tail = run("audit", "tail", "-n", "2", "--json", "--data-dir", data)
    assert [json.loads(line)["seq"] for line in tail.output.splitlines()] == [3, 4]
    found = run("audit", "search", "--decision", "deny", "--json", "--data-dir", data)
    assert [json.loads(line)["org"] for line in found.output.splitlines()] == ["metro-pd"] * 2
    assert "1 matching audit record" in run("audit", "search", "--face-id", "f2", "--data-dir",
                                            data).output

    with store.write() as conn:
        conn.execute(update(T).where(T.c.seq == 3).values(decision="deny"))
    broken = run("audit", "verify", "--data-dir", data)
    assert broken.exit_code == 1 and "BROKEN at record 3" in broken.output


def test_report_formats(home, tmp_path):
    data, _ = home
    out = run("report", "--format", "json", "--data-dir", data)
    rep = json.loads(out.output)
    assert rep["calls"] == 4 and rep["denials_by_rule"] == {"police-moratorium-2020": 2}
    assert run("report", "--format", "csv", "--data-dir", data).output.startswith("table,key")
    html = tmp_path / "r.html"
    assert run("report", "-o", html, "--data-dir", data).exit_code == 0
    assert "<svg" in html.read_text()
    assert run("report", "--format", "pdf", "--data-dir", data).exit_code == 2


def test_erase_and_retention_commands(home):
    data, store = home
    store.create_collection("c", "1.0")
    assert run("erase", "--data-dir", data).exit_code == 2
    out = run("erase", "--external-image-id", "nobody", "--as", "dpo-office", "--json",
              "--data-dir", data)
    assert out.exit_code == 0 and json.loads(out.output)["FacesRemoved"] == 0
    rec = Ledger(store.engine).tail(1)[0]
    assert (rec["operation"], rec["org"]) == ("Erase", "dpo-office")
    assert run("retention", "set", "c", "30", "--data-dir", data).exit_code == 0
    assert json.loads(run("retention", "show", "--json", "--data-dir", data).output) == {"c": 30}
    assert "nothing to purge" in run("retention", "purge", "--data-dir", data).output
    assert run("retention", "set", "nope", "30", "--data-dir", data).exit_code == 2


def test_policy_check_and_explain(tmp_path):
    good = run("policy", "check", "moratorium-2020")
    assert good.exit_code == 0 and "police-moratorium-2020" in good.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("default: allow\nrules:\n  - id: x\n    effect: deny\n    match:\n"
                   "      category: police\n")
    out = run("policy", "check", bad)
    assert out.exit_code == 2 and "bad.yaml:6:" in out.output and "police" in out.output
    denied = run("policy", "explain", "moratorium-2020", "SearchFaces",
                 "--category", "law_enforcement")
    assert "deny by police-moratorium-2020" in denied.output
    floor = run("policy", "explain", "moratorium-2020", "SearchFaces", "--category",
                "child_safety", "--param", "FaceMatchThreshold=99")
    assert "allow by child-safety-floor" in floor.output
