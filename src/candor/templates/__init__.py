"""The HTML templates (``*.j2`` files next to this module) and the ONE Jinja environment that
renders them: autoescaped, strict (a missing value is an error, not an empty cell), with
trimmed blocks so the template's layout does not leak into the page.

Reports prepare what they cannot measure as explicit values (``None`` and a reason), so a
strict environment never meets an absent key.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from candor.templates.filters import fmt_ci, fmt_num, fmt_pct, fmt_rate, short_name

FOLDER = Path(__file__).parent

ENV = Environment(loader=FileSystemLoader(FOLDER), autoescape=True, undefined=StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
ENV.filters.update(rate=fmt_rate, num=fmt_num, pct=fmt_pct, ci=fmt_ci, short=short_name)


def render(name: str, **context) -> str:
    """Render template ``name`` (e.g. ``"eval_page.html.j2"``) with ``context``."""
    return ENV.get_template(name).render(**context)
