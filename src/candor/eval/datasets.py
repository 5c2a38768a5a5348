"""Image sets for evaluation: which photos, who is in each, and which groups they belong to.

Three ways to name a set:

- a folder of ``<person>/<photo>``: the folder name is the identity;
- a labels CSV with a ``file`` column (paths relative to the images folder) and any group
  columns (FairFace's ``labels.csv``: ``file,age,gender,race``). An ``identity`` (or
  ``person``) column names who is in each photo; without one every photo is a different person,
  which is true of FairFace and gives impostor pairs only;
- a labels CSV keyed by ``person`` (no ``file`` column) over a ``<person>/<photo>`` folder: each
  person's groups apply to all of their photos.
"""

from __future__ import annotations

import csv
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from candor.errors import InvalidParameter

IDENTITY_COLUMNS = ("identity", "person", "subject", "subject_id")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass
class ImageSet:
    """Photos with an identity each and optional group labels (column -> value)."""

    root: Path
    files: list[str]                      # relative to root
    identities: list[str]
    groups: dict[str, list[str]] = field(default_factory=dict)   # column -> value per file
    source: str = ""

    def __len__(self) -> int:
        return len(self.files)

    @property
    def paths(self) -> list[Path]:
        return [self.root / f for f in self.files]

    @property
    def has_genuine_pairs(self) -> bool:
        return len(set(self.identities)) < len(self.identities)

    def group_values(self, spec: str) -> list[str]:
        """Per file, the group of ``spec``: one column (``race``) or an intersection
        (``race+gender``, values joined with " / ")."""
        columns = [c.strip() for c in spec.split("+") if c.strip()]
        missing = [c for c in columns if c not in self.groups]
        if missing:
            raise InvalidParameter(f"no column {', '.join(missing)} in the labels; have: "
                                   f"{', '.join(sorted(self.groups)) or 'none'}")
        return [" / ".join(self.groups[c][i] for c in columns) for i in range(len(self.files))]

    def subset(self, indices) -> ImageSet:
        idx = list(indices)
        return ImageSet(self.root, [self.files[i] for i in idx],
                        [self.identities[i] for i in idx],
                        {k: [v[i] for i in idx] for k, v in self.groups.items()}, self.source)


def from_folder(root: str | Path) -> ImageSet:
    """``<root>/<person>/<photo>``: identity = the person folder's name."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidParameter(f"not a folder: {root}")
    files, ids = [], []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for photo in sorted(person.rglob("*")):
            if photo.is_file() and photo.suffix.lower() in IMAGE_SUFFIXES:
                files.append(str(photo.relative_to(root)))
                ids.append(person.name)
    if not files:
        raise InvalidParameter(f"no photos in person folders under {root} "
                               f"(expected <person>/<photo>.jpg)")
    return ImageSet(root, files, ids, {}, str(root))


def from_labels(labels: str | Path, images: str | Path | None = None,
                identity_column: str | None = None, limit: int | None = None) -> ImageSet:
    """A set from a labels CSV; ``images`` defaults to the CSV's folder."""
    labels = Path(labels)
    root = Path(images) if images else labels.parent
    try:
        with labels.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InvalidParameter(f"cannot read labels {labels}: {exc.strerror}") from exc
    if not rows:
        raise InvalidParameter(f"{labels} has no rows")
    columns = list(rows[0])
    if identity_column and identity_column not in columns:
        raise InvalidParameter(f"{labels} has no column {identity_column!r}")
    id_col = identity_column or next((c for c in IDENTITY_COLUMNS if c in columns), None)
    if "file" in columns:
        if limit:
            rows = rows[:limit]
        group_cols = [c for c in columns if c not in ("file", id_col)]
        files = [r["file"] for r in rows]
        ids = [r[id_col] for r in rows] if id_col else list(files)
        groups = {c: [r[c] for r in rows] for c in group_cols}
        missing = [f for f in files[:50] if not (root / f).is_file()]
        if missing:
            raise InvalidParameter(f"photos named in {labels} are not under {root}: "
                                   f"{', '.join(missing[:3])}")
        return ImageSet(root, files, ids, groups, str(labels))
    if id_col is None:
        raise InvalidParameter(f"{labels} needs a 'file' column (one row per photo) or a "
                               f"'person' column (one row per <person> folder)")
    people = {r[id_col]: r for r in rows}
    folder = from_folder(root)
    keep = [i for i, p in enumerate(folder.identities) if p in people]
    if not keep:
        raise InvalidParameter(f"none of the people in {labels} has a folder under {root}")
    sub = folder.subset(keep[:limit] if limit else keep)
    group_cols = [c for c in columns if c != id_col]
    sub.groups = {c: [people[p][c] for p in sub.identities] for c in group_cols}
    sub.source = str(labels)
    return sub


def from_paths(root: str | Path, files: list[str], identities: list[str] | None = None,
               source: str = "") -> ImageSet:
    return ImageSet(Path(root), list(files), list(identities or files), {}, source)


def from_pairs(pairs_file: str | Path, images: str | Path | None = None) -> ImageSet:
    """The photos an LFW pairs file names, with their people (e.g. ``pairsDevTrain.txt``)."""
    from candor.eval.pairs import read_pairs

    pl = read_pairs(pairs_file)
    ids = pl.identities()
    if ids is None:
        raise InvalidParameter(f"{pairs_file} does not name people (only the LFW pairs "
                               f"format does): use a folder or a labels CSV as an image set")
    root = Path(images) if images else Path(pairs_file).parent
    files = pl.images
    return ImageSet(root, files, [ids[f] for f in files], {}, str(pairs_file))


def split(images: ImageSet, part: int, parts: int) -> ImageSet:
    """Part ``part`` (1-based) of ``parts`` disjoint parts, by a stable hash of each person's
    identity: no person is in two parts, and the same data always splits the same way."""
    if not 1 <= part <= parts:
        raise InvalidParameter(f"part must be 1..{parts}, got {part}")
    keep = [i for i, who in enumerate(images.identities)
            if zlib.crc32(who.encode()) % parts == part - 1]
    out = images.subset(keep)
    out.source = f"{images.source}@{part}/{parts}"
    return out


def load(spec: str | Path, images: str | Path | None = None, **kwargs) -> ImageSet:
    """An image set from a spec: a folder of ``<person>/<photo>``, a labels ``.csv`` (photos
    under ``images`` or the CSV's folder) or an LFW pairs ``.txt`` file, optionally followed by
    ``@K/N`` for the K-th of N disjoint parts (split by person), e.g.
    ``fairface-val/labels.csv@1/2``."""
    text = str(spec)
    part = None
    m = re.fullmatch(r"(.*)@(\d+)/(\d+)", text)
    if m:
        text, part = m.group(1), (int(m.group(2)), int(m.group(3)))
    path = Path(text)
    if path.is_dir():
        out = from_folder(path)
    elif path.suffix.lower() == ".csv":
        out = from_labels(path, images, **kwargs)
    elif path.suffix.lower() == ".txt":
        out = from_pairs(path, images)
    elif not path.exists():
        raise InvalidParameter(f"no such file or folder: {path}")
    else:
        raise InvalidParameter(f"{path} is not a folder of <person>/<photo>, a labels .csv or "
                               f"an LFW pairs .txt")
    return split(out, *part) if part else out
