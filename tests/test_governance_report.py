"""The transparency report: its numbers are the ledger's numbers, counted independently."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import String, cast, create_engine, func, select, update

from candor.governance.ledger import Ledger
from candor.governance.report import build_report, render
from candor.store import migrations
from candor.store.schema import audit_records as T

ORGS = [("metro-pd", "law_enforcement"), ("thorn", "child_safety"), ("daily-news", "media")]
OPS = ["SearchFacesByImage", "SearchFaces", "CompareFaces", "DetectFaces", "IndexFaces"]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    eng = create_engine("sqlite://")  # in memory: 300 durable commits would take seconds
    migrations.migrate(eng)
    led = Ledger(eng)
    rnd = random.Random(3)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(300):
        org, cat = rnd.choice(ORGS)
        op = rnd.choice(OPS)
        decision = rnd.choice(["allow", "allow", "allow", "deny", "failed"])
        threshold = rnd.choice([None, 50, 80, 95, 99, 99.5, 100]) if op != "DetectFaces" else None
        matches = rnd.choice([None, [], [{"FaceId": f"f{i}", "Similarity": 99.0}]])
        led.append(ts=start + timedelta(hours=17 * i), operation=op, decision=decision, org=org,
                   category=cat, principal=f"AK-{org}", threshold=threshold, matches=matches,
                   rule=rnd.choice(["police-moratorium-2020", "child-safety-floor"])
                   if decision == "deny" else "default",
                   details={"constraints": {"human_review": True}} if i % 7 == 0 else None)
    led.append(ts=start + timedelta(days=40), operation="Erase", decision="erasure",
               faces_found=3, matches=[{"FaceId": "x", "Removed": True}] * 3)
    yield led
    eng.dispose()


def direct(led, column, since, until, **where):
    """Counts straight from the table with SQL, independent of the report's code."""
    q = (select(column, func.count()).where(T.c.ts >= since, T.c.ts < until,
                                            T.c.decision.in_(["allow", "deny", "failed"]))
         .group_by(column))
    for k, v in where.items():
        q = q.where(T.c[k] == v)
    with led.engine.connect() as c:
        return dict(c.execute(q).all())


def test_report_numbers_equal_direct_counts(ledger):
    rep = build_report(ledger, "2026-02-01", "2026-04-30").to_dict()
    since, until = "2026-02-01", "2026-05-01"
    totals = {k: v["total"] for k, v in rep["by_organisation"].items()}
    assert totals == direct(ledger, T.c.org, since, until)
    assert {k: v["deny"] for k, v in rep["by_category"].items() if v["deny"]} == \
        direct(ledger, T.c.category, since, until, decision="deny")
    assert {k: v["allow"] for k, v in rep["by_operation"].items() if v["allow"]} == \
        direct(ledger, T.c.operation, since, until, decision="allow")
    assert {k: v["total"] for k, v in rep["by_month"].items()} == \
        direct(ledger, func.substr(T.c.ts, 1, 7), since, until)
    assert rep["denials_by_rule"] == direct(ledger, T.c.rule, since, until, decision="deny")
    assert rep["calls"] == sum(totals.values()) > 50
    assert list(rep["by_month"]) == ["2026-02", "2026-03", "2026-04"]
    with ledger.engine.connect() as c:
        searches = c.execute(select(T.c.matches).where(
            T.c.ts >= since, T.c.ts < until, T.c.decision == "allow",
            T.c.operation.in_(["SearchFacesByImage", "SearchFaces"]))).scalars().all()
        top = c.execute(select(func.count()).where(
            T.c.ts >= since, T.c.ts < until, T.c.threshold >= 99)).scalar_one()
    assert rep["searches"] == {"allowed": len(searches),
                               "with_matches": sum(1 for m in searches if m)}
    assert sum(sum(v.values()) for v in rep["threshold_distribution"].values()) >= top
    assert sum(rep["threshold_distribution"]["99-100"].values()) == top
    assert rep["erasure"] == {"erasures": 1, "purges": 0, "faces_removed": 3}
    with ledger.engine.connect() as c:
        reviewed = c.execute(select(func.count()).where(
            T.c.ts >= since, T.c.ts < until, T.c.decision == "allow",
            cast(T.c.details, String).like('%"human_review": true%'))).scalar_one()
    assert rep["human_review_required"] == reviewed > 0
    assert rep["chain"]["verified"] is True


def test_csv_and_html(ledger):
    rep = build_report(ledger, "2026-01-01", "2026-12-31")
    rows = list(csv.DictReader(io.StringIO(render(rep, "csv"))))
    org_rows = {r["key"]: int(r["total"]) for r in rows if r["table"] == "by_organisation"}
    assert org_rows == {k: v["total"] for k, v in rep.to_dict()["by_organisation"].items()}
    assert json.loads(render(rep, "json"))["calls"] == 300
    html = render(rep, "html")
    assert html.count("<svg") == 4 and "Denials by rule" in html
    assert rep.chain["head_hash"] in html and "BROKEN" not in html
    with pytest.raises(ValueError):
        render(rep, "pdf")
    with pytest.raises(ValueError, match="starts"):
        build_report(ledger, "2026-02-01", "2026-01-01")


def test_report_shows_a_broken_chain(tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    migrations.migrate(eng)
    led = Ledger(eng)
    for _ in range(3):
        led.append(operation="DetectFaces", decision="allow", org="o")
    with eng.begin() as c:
        c.execute(update(T).where(T.c.seq == 2).values(org="p"))
    rep = build_report(led)
    assert rep.chain["verified"] is False and rep.chain["broken_seq"] == 2
    assert "BROKEN at record 2" in render(rep, "html")
