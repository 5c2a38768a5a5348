"""Transparency report: what was done, by whom, under which rules, read from the audit ledger.

Counts by organisation, category, operation and month (each split by decision), denials by
rule, the distribution of match thresholds, how many searches returned matches, and the
erasures and purges, for a period. Every number is a count of ledger records, so anyone with
the ledger can recompute it; the report also carries the chain's head hash and whether the
chain verified, which publishes the anchor that makes a later rewrite visible.
Formats: JSON (the data), CSV (one row per table cell), HTML with charts (matplotlib, SVG
inline so it prints sharply; the page is ``templates/governance_report.html.j2``).
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from candor.clock import day_end, day_start, iso, utcnow
from candor.governance.ledger import Ledger
from candor.templates import render as render_template

CALL_DECISIONS = ("allow", "deny", "failed")
RECEIPTS = ("erasure", "purge")
SEARCHES = ("SearchFaces", "SearchFacesByImage", "SearchUsers", "SearchUsersByImage")
# Threshold buckets: [low, high) except the last, which includes 100.
BUCKETS = ((0, 50), (50, 80), (80, 90), (90, 95), (95, 99), (99, 100))


def bucket_label(low: float, high: float) -> str:
    return f"{low:g}-{high:g}" if high < 100 else f"{low:g}-100"


def bucket_of(threshold: float) -> str:
    for low, high in BUCKETS:
        if low <= threshold < high or (high == 100 and threshold == 100):
            return bucket_label(low, high)
    return "other"


@dataclass
class Report:
    """The aggregated numbers for one period; ``to_dict`` is the JSON form."""

    period_from: str
    period_to: str
    generated_at: str
    chain: dict[str, Any]
    calls: int = 0
    by_org: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_category: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_operation: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_month: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    denials_by_rule: Counter = field(default_factory=Counter)
    thresholds: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    searches: int = 0
    searches_with_matches: int = 0
    human_review: int = 0  # allowed calls whose rule required a person to confirm matches
    erasures: int = 0
    purges: int = 0
    faces_removed: int = 0

    def add(self, rec: dict[str, Any]) -> None:
        decision = rec["decision"]
        if decision in RECEIPTS:
            self.erasures += decision == "erasure"
            self.purges += decision == "purge"
            self.faces_removed += rec.get("faces_found") or 0
            return
        if decision not in CALL_DECISIONS:
            return  # operator actions such as SetRetention are in the ledger, not the counts
        self.calls += 1
        self.by_org[rec.get("org") or "(none)"][decision] += 1
        self.by_category[rec.get("category") or "(none)"][decision] += 1
        self.by_operation[rec["operation"]][decision] += 1
        self.by_month[rec["ts"][:7]][decision] += 1
        if decision == "deny":
            self.denials_by_rule[rec.get("rule") or "(none)"] += 1
        if rec.get("threshold") is not None:
            self.thresholds[bucket_of(rec["threshold"])][decision] += 1
        constraints = (rec.get("details") or {}).get("constraints") or {}
        if decision == "allow" and constraints.get("human_review"):
            self.human_review += 1
        if rec["operation"] in SEARCHES and decision == "allow":
            self.searches += 1
            self.searches_with_matches += bool(rec.get("matches"))

    def to_dict(self) -> dict[str, Any]:
        def table(d: dict[str, Counter]) -> dict[str, dict[str, int]]:
            return {k: {**{x: d[k][x] for x in CALL_DECISIONS}, "total": sum(d[k].values())}
                    for k in sorted(d)}

        order = [bucket_label(lo, hi) for lo, hi in BUCKETS] + ["other"]
        return {
            "period": {"from": self.period_from, "to": self.period_to},
            "generated_at": self.generated_at,
            "chain": self.chain,
            "calls": self.calls,
            "by_organisation": table(self.by_org),
            "by_category": table(self.by_category),
            "by_operation": table(self.by_operation),
            "by_month": table(self.by_month),
            "denials_by_rule": dict(sorted(self.denials_by_rule.items())),
            "threshold_distribution": {k: {x: self.thresholds[k][x] for x in CALL_DECISIONS}
                                       for k in order if k in self.thresholds},
            "searches": {"allowed": self.searches, "with_matches": self.searches_with_matches},
            "human_review_required": self.human_review,
            "erasure": {"erasures": self.erasures, "purges": self.purges,
                        "faces_removed": self.faces_removed},
        }


def _day(value: date | datetime | str | None, default: date) -> date:
    if value is None:
        return default
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value)


def build_report(ledger: Ledger, start: date | str | None = None, end: date | str | None = None,
                 verify: bool = True) -> Report:
    """Aggregate the ledger records from ``start`` to ``end`` (dates, both inclusive, UTC).
    Without ``start`` the report begins at the first record; without ``end`` it runs to today."""
    today = utcnow().date()
    first = ledger.search(limit=1)
    first_day = date.fromisoformat(first[0]["ts"][:10]) if first else today
    d0, d1 = _day(start, first_day), _day(end, today)
    if d0 > d1:
        raise ValueError(f"the period starts ({d0}) after it ends ({d1})")
    since, until = day_start(d0), day_end(d1)
    if verify:
        result = ledger.verify()
        chain = {"verified": result.ok, "records": result.checked, "head_seq": result.head_seq,
                 "head_hash": result.head_hash, "problem": result.problem or None,
                 "broken_seq": result.broken_seq}
    else:
        head = ledger.head() or (0, None)
        chain = {"verified": None, "head_seq": head[0], "head_hash": head[1]}
    report = Report(d0.isoformat(), d1.isoformat(), iso(), chain)
    for rec in ledger.iter_records(since=since, until=until):
        report.add(rec)
    return report


def to_json(report: Report) -> str:
    import json

    return json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n"


def to_csv(report: Report) -> str:
    """One row per table cell: ``table,key,allow,deny,failed,total``."""
    data = report.to_dict()
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["table", "key", "allow", "deny", "failed", "total"])
    for name in ("by_organisation", "by_category", "by_operation", "by_month"):
        for key, row in data[name].items():
            w.writerow([name, key, row["allow"], row["deny"], row["failed"], row["total"]])
    for rule, n in data["denials_by_rule"].items():
        w.writerow(["denials_by_rule", rule, "", n, "", n])
    for bucket, row in data["threshold_distribution"].items():
        w.writerow(["threshold_distribution", bucket, row["allow"], row["deny"], row["failed"],
                    sum(row.values())])
    s = data["searches"]
    w.writerow(["searches", "with_matches", s["with_matches"], "", "", s["allowed"]])
    w.writerow(["human_review_required", "allowed", data["human_review_required"], "", "",
                data["human_review_required"]])
    e = data["erasure"]
    for key in ("erasures", "purges", "faces_removed"):
        w.writerow(["erasure", key, "", "", "", e[key]])
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# HTML


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg"):]


def _charts(data: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    colours = {"allow": "#4c72b0", "deny": "#c44e52", "failed": "#999999"}
    charts: dict[str, str] = {}

    def stacked(table: dict[str, dict[str, int]], title: str, horizontal: bool = False):
        keys = list(table)
        if not keys:
            return None
        fig, ax = plt.subplots(figsize=(7, max(2.2, 0.35 * len(keys) + 1) if horizontal else 3))
        bottom = [0] * len(keys)
        for decision in CALL_DECISIONS:
            values = [table[k][decision] for k in keys]
            if horizontal:
                ax.barh(keys, values, left=bottom, color=colours[decision], label=decision)
            else:
                ax.bar(keys, values, bottom=bottom, color=colours[decision], label=decision)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_title(title)
        ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.spines[["top", "right"]].set_visible(False)
        if not horizontal:
            ax.tick_params(axis="x", labelrotation=45)
        return _svg(fig)

    charts["month"] = stacked(data["by_month"], "Calls per month")
    charts["operation"] = stacked(data["by_operation"], "Calls by operation", horizontal=True)
    thresholds = {k: {**v} for k, v in data["threshold_distribution"].items()}
    charts["threshold"] = stacked(thresholds, "Match thresholds requested")
    rules = data["denials_by_rule"]
    if rules:
        fig, ax = plt.subplots(figsize=(7, max(2.2, 0.35 * len(rules) + 1)))
        ax.barh(list(rules), list(rules.values()), color=colours["deny"])
        ax.set_title("Denials by rule")
        ax.spines[["top", "right"]].set_visible(False)
        charts["rules"] = _svg(fig)
    return {k: v for k, v in charts.items() if v}


_SECTIONS = [("by_organisation", "By organisation"), ("by_category", "By use-case category"),
             ("by_operation", "By operation"), ("by_month", "By month")]
_CHART_FOR = {"by_month": "month", "by_operation": "operation", "by_organisation": "-",
              "by_category": "-"}


def to_html(report: Report, charts: bool = True) -> str:
    """The report as a page (``templates/governance_report.html.j2``)."""
    data = report.to_dict()
    return render_template("governance_report.html.j2", d=data,
                           charts=_charts(data) if charts else {}, sections=_SECTIONS,
                           chart_for=_CHART_FOR)


def render(report: Report, fmt: str) -> str:
    """The report as ``json``, ``csv`` or ``html``."""
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        return to_html(report)
    raise ValueError(f"unknown report format {fmt!r}: json, csv or html")
