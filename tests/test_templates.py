"""One Jinja environment for every HTML page: templates are package files, values are escaped,
and a missing value is an error (never a silently empty cell)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import jinja2
import pytest

from candor import clock
from candor.templates import ENV, FOLDER, render


def test_every_template_is_a_file_that_compiles():
    names = sorted(p.name for p in FOLDER.glob("*.j2"))
    assert {"eval_page.html.j2", "eval_fairness.html.j2", "eval_normalisation.html.j2",
            "governance_report.html.j2"} <= set(names)
    for name in names:
        ENV.get_template(name)


def test_missing_values_fail_and_text_is_escaped():
    with pytest.raises(jinja2.UndefinedError):
        ENV.from_string("{{ d.nothing | num }}").render(d={})
    assert ENV.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    assert render("eval_normalisation.html.j2", c={
        "before": "raw-cosine", "after": "<x>", "targets": {}, "groupings": {},
        "recommended": {}}, rec={}).count("&lt;x&gt;") == 1


def test_the_package_data_ships_the_templates():
    text = (FOLDER.parents[2] / "pyproject.toml").read_text()
    package_data = text.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert '"templates/*"' in package_data


def test_clock_reads_naive_as_utc():
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert clock.as_utc(naive).tzinfo is timezone.utc
    aware = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert clock.as_utc(aware) is aware
    assert clock.iso(naive) == "2026-01-02T03:04:05.000000Z"
    assert clock.iso(aware) == "2026-01-02T01:04:05.000000Z"
    assert clock.day_end(date(2026, 1, 2)) - clock.day_start(date(2026, 1, 2)) == timedelta(days=1)
    assert clock.utcnow().tzinfo is timezone.utc
