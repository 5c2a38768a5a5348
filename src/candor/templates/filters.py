"""Number formatting for the HTML reports (the templates' filters); ``–`` marks a value that
could not be measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fmt_rate(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_rate(x) for x in v) + "]"
    v = float(v)
    if v == 0:
        return "0"
    if v >= 0.01:
        return f"{v:.4f}".rstrip("0").rstrip(".") if v < 1 else f"{v:.3g}"
    return f"{v:.2e}"


def fmt_num(v, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return f"{float(v):,.{digits}f}"


def fmt_pct(v, digits: int = 2) -> str:
    return "–" if v is None else f"{100 * float(v):.{digits}f}%"


def fmt_ci(ci, kind: str = "rate") -> str:
    if not ci:
        return "–"
    f = {"rate": fmt_rate, "pct": fmt_pct, "ratio": lambda x: fmt_num(x, 1)}[kind]
    return f"{f(ci[0])} – {f(ci[1]) if ci[1] is not None else '∞'}"


def short_name(spec: str) -> str:
    """A set spec for labels: ``/a/b/lfw`` -> ``lfw``, ``/a/fairface-val/labels.csv@1/2`` ->
    ``fairface-val/labels.csv@1/2``."""
    text, _, part = str(spec).partition("@")
    p = Path(text)
    name = f"{p.parent.name}/{p.name}" if p.suffix else p.name
    return name + (f"@{part}" if part else "")
