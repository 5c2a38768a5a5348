"""Pair lists: the LFW pairs format (with or without folds) and a simple CSV.

LFW format (``pairs.txt``, ``pairsDevTrain.txt``): a header line, then same-person lines
``name  n1  n2`` and different-person lines ``name1  n1  name2  n2``, image paths
``<name>/<name>_<nnnn>.jpg``. The header is either one count (View 1: N same pairs, then N
different) or ``folds count`` (View 2: 10 folds, each N same then N different pairs).

CSV: a header ``image_a,image_b,same`` (column order free; ``same`` is 1/0, true/false,
yes/no); paths are relative to the images folder. An optional ``fold`` column gives folds.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from candor.errors import InvalidParameter


@dataclass(frozen=True)
class Pair:
    a: str            # image path relative to the images folder
    b: str
    same: bool
    fold: int | None = None
    person_a: str | None = None   # identities where the format names them (LFW)
    person_b: str | None = None


@dataclass
class PairList:
    pairs: list[Pair]
    folds: int          # 0 when the file has no folds
    source: str
    format: str         # "lfw" or "csv"

    @property
    def images(self) -> list[str]:
        """Every image the pairs name, once, sorted."""
        return sorted({p for pair in self.pairs for p in (pair.a, pair.b)})

    def identities(self) -> dict[str, str] | None:
        """Image -> person, where the format names people (LFW); None otherwise."""
        if any(p.person_a is None for p in self.pairs):
            return None
        out: dict[str, str] = {}
        for p in self.pairs:
            out[p.a], out[p.b] = p.person_a, p.person_b
        return out


def lfw_image(person: str, number: str | int) -> str:
    return f"{person}/{person}_{int(number):04d}.jpg"


def read_pairs(path: str | Path) -> PairList:
    """A pair list from an LFW pairs file or a CSV (chosen by content, not name)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidParameter(f"cannot read pairs file {path}: {exc.strerror}") from exc
    first = text.lstrip().split("\n", 1)[0]
    if "," in first:
        return _read_csv(path, text)
    return _read_lfw(path, text)


def _read_lfw(path: Path, text: str) -> PairList:
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        raise InvalidParameter(f"{path} is empty")
    header = lines[0].split()
    try:
        numbers = [int(x) for x in header]
    except ValueError:
        raise InvalidParameter(f"{path}: the first line of an LFW pairs file is a count or "
                               f"'folds count', not {lines[0]!r}") from None
    if len(numbers) == 1:
        folds, per_fold = 0, numbers[0]
    elif len(numbers) == 2:
        folds, per_fold = numbers
    else:
        raise InvalidParameter(f"{path}: unexpected header {lines[0]!r}")
    pairs: list[Pair] = []
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split()
        fold = (len(pairs) // (2 * per_fold)) if folds else None
        if len(parts) == 3:
            name, a, b = parts
            pairs.append(Pair(lfw_image(name, a), lfw_image(name, b), True, fold, name, name))
        elif len(parts) == 4:
            n1, a, n2, b = parts
            pairs.append(Pair(lfw_image(n1, a), lfw_image(n2, b), False, fold, n1, n2))
        else:
            raise InvalidParameter(f"{path}:{lineno}: expected 3 or 4 fields, got {line!r}")
    expected = 2 * per_fold * max(folds, 1)
    if len(pairs) != expected:
        raise InvalidParameter(f"{path}: header promises {expected} pairs, found {len(pairs)}")
    return PairList(pairs, folds, str(path), "lfw")


_TRUE = {"1", "true", "yes", "y", "same", "t"}
_FALSE = {"0", "false", "no", "n", "different", "f"}


def _read_csv(path: Path, text: str) -> PairList:
    rows = list(csv.DictReader(text.splitlines()))
    needed = {"image_a", "image_b", "same"}
    if not rows or not needed <= set(rows[0]):
        raise InvalidParameter(f"{path}: a pairs CSV needs the columns image_a,image_b,same")
    pairs = []
    has_folds = "fold" in rows[0]
    for lineno, row in enumerate(rows, start=2):
        same = (row["same"] or "").strip().lower()
        if same not in _TRUE | _FALSE:
            raise InvalidParameter(f"{path}:{lineno}: 'same' must be 1/0 or true/false, "
                                   f"got {row['same']!r}")
        fold = int(row["fold"]) if has_folds and row["fold"] not in (None, "") else None
        pairs.append(Pair(row["image_a"].strip(), row["image_b"].strip(), same in _TRUE, fold))
    folds = len({p.fold for p in pairs}) if has_folds else 0
    return PairList(pairs, folds, str(path), "csv")
