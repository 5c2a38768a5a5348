"""RecognizeCelebrities and GetCelebrityInfo over the operator's own gallery.

candor ships no gallery (no one consented to be in one): the operator builds it from photos
they have the right to use (``candor celebrities import``; :mod:`candor.store.celebrities`).

Recognition scores each face of the image against every person with the scoring and its
normalisation (:class:`candor.scoring.similarity.Scoring`), using all of a person's photos: a
person's score is the better of the score to their template (the unit mean of their photos'
embeddings) and to their nearest single photo (:func:`person_scores`). Celebrity recognition is
*open-set* (most faces are of no one in the gallery), so the best person's score is raised by
how much it stands out (:func:`open_set_scores`) and mapped through the calibrated table to
MatchConfidence; the person is named when that reaches the gallery's threshold, measured on
the gallery itself: each of its photos is scored as a stranger against everyone but its own
person, and the threshold names at most 1% of them (:func:`calibrated_threshold`). Every extra
person is one more chance for a stranger to match someone, and people with more photos attract
strangers more; measuring on the gallery follows both without data beyond the operator's own
photos. The method's weights were chosen on one split of LFW View 1 and measured on another
(bench/celebrities.py; the figures are in docs/celebrities.md).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from candor.errors import InvalidParameter, ResourceNotFound
from candor.scoring.similarity import CELEBRITY_THRESHOLD, Scoring, scores
from candor.service import Service, operation
from candor.service.common import request_image, store_of
from candor.store import Gallery

#: Rekognition names at most this many celebrities in one image
MAX_CELEBRITIES = 64
#: the open-set score's weights: how much standing out from the second-best person (margin)
#: and from the gallery as a whole (the query's z-score over the templates, /100) add to the
#: best person's score. Chosen on the development split (docs/celebrities.md).
MARGIN_WEIGHT = 0.5
ZSCORE_WEIGHT = 0.5
#: a person with more photos gives a stranger more chances to come close to one of them: each
#: person's score is lowered by this much per unit of log(photos) above the gallery's mean
#: (chosen on the development split, docs/celebrities.md)
PHOTOS_WEIGHT = 0.005
#: CELEBRITY_THRESHOLD holds for galleries up to this many people; beyond, every doubling of
#: the gallery raises the threshold this much (fitted on the development split)
REFERENCE_GALLERY = 400
#: at import, each photo's embedding is its own plus VIEWS_WEIGHT x the mean of these
#: perturbed views' (:mod:`candor.face.augment`). Empty: no set of views beat one plain
#: embedding per photo on the development split (docs/celebrities.md,
#: bench/celebrity_augment.py); the path stays so another model can be measured the same way
GALLERY_VIEWS: tuple[str, ...] = ()
VIEWS_WEIGHT = 0.0
THRESHOLD_PER_DOUBLING = 0.08
#: the share of strangers a gallery's threshold lets through, measured on the gallery itself
#: (:func:`calibrated_threshold`)
TARGET_NAMED = 0.01
#: below this many gallery photos a 1% tail cannot be measured: the size rule applies
MIN_CALIBRATION_PHOTOS = 200
#: at most this many gallery photos are scored to measure it (a sample, for large galleries)
CALIBRATION_PHOTOS = 5000


def gallery_threshold(people: int) -> float:
    """The MatchConfidence a face must reach to be named, for a gallery of ``people``."""
    if people <= REFERENCE_GALLERY:
        return CELEBRITY_THRESHOLD
    return min(99.95, CELEBRITY_THRESHOLD
               + THRESHOLD_PER_DOUBLING * math.log2(people / REFERENCE_GALLERY))


def person_scores(gallery: Gallery, vectors: np.ndarray, scoring: Scoring) -> np.ndarray:
    """(Q, P) score (the scoring's, normalised when it is on) of each query face against each
    person: the better of their template and their nearest photo."""
    vectors = np.atleast_2d(np.asarray(vectors, np.float32))
    templates = scores(vectors, gallery.templates, scoring.normalised)
    best = templates
    if len(gallery.faces):
        per_face = scores(vectors, gallery.faces, scoring.normalised)
        nearest = np.full_like(best, -np.inf)
        np.maximum.at(nearest.T, gallery.owners, per_face.T)
        best = np.maximum(best, nearest)
    return best


def open_set_scores(gallery: Gallery, vectors: np.ndarray,
                    scoring: Scoring) -> tuple[np.ndarray, np.ndarray]:
    """For each face: the best person's index and the open-set score, the best person's score
    raised by how far it stands out from the second best and from the whole gallery (a stranger
    tends to resemble several people a little; a person in the gallery, one of them a lot).
    Each person's score first gives back what their number of photos adds (PHOTOS_WEIGHT)."""
    return _open_set(gallery, person_scores(gallery, vectors, scoring))


def _open_set(gallery: Gallery, per_person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`open_set_scores` from the (Q, P) person scores; NaN marks a person left out."""
    if len(gallery.owners) and PHOTOS_WEIGHT:
        photos = np.log(np.maximum(np.bincount(gallery.owners, minlength=len(gallery)), 1))
        per_person = per_person - PHOTOS_WEIGHT * (photos - photos.mean())[None, :]
    filled = np.where(np.isnan(per_person), -np.inf, per_person)
    best = filled.argmax(axis=1)
    ranked = -np.sort(-filled, axis=1)
    top = ranked[:, 0]
    if per_person.shape[1] - int(np.isnan(per_person).any()) < 2:
        return best, top
    spread = np.nanstd(per_person, axis=1)
    z = (top - np.nanmean(per_person, axis=1)) / np.where(spread > 0, spread, 1.0)
    return best, top + MARGIN_WEIGHT * (top - ranked[:, 1]) + ZSCORE_WEIGHT * 0.01 * z


def stranger_scores(gallery: Gallery, scoring: Scoring, limit: int = CALIBRATION_PHOTOS,
                    seed: int = 0) -> np.ndarray:
    """Open-set scores of strangers to this gallery, from the gallery itself: each of (up to
    ``limit``) gallery photos scored against everyone *but* its own person (leave one person
    out). Templates and nearest photos of the others do not depend on the person left out."""
    if len(gallery) < 2 or not len(gallery.faces):
        return np.zeros(0)
    rows = np.arange(len(gallery.faces))
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    out = []
    for chunk in np.array_split(rows, max(1, len(rows) // 512)):
        per_person = person_scores(gallery, gallery.faces[chunk], scoring).astype(np.float64)
        per_person[np.arange(len(chunk)), gallery.owners[chunk]] = np.nan
        out.append(_open_set(gallery, per_person)[1])
    return np.concatenate(out)


def calibrated_threshold(gallery: Gallery, scoring: Scoring) -> float:
    """The MatchConfidence a face must reach to be named in this gallery: the lowest at which
    at most TARGET_NAMED of the gallery's own strangers (:func:`stranger_scores`) would be
    named, never below CELEBRITY_THRESHOLD; the size rule (:func:`gallery_threshold`) when the
    gallery has too few photos to measure a 1% tail. Kept with the gallery (``derived``),
    which the store rebuilds only when its version changes."""
    key = ("threshold", scoring.name, scoring.table_file)
    if key not in gallery.derived:
        confidences = np.sort(scoring.from_score(stranger_scores(gallery, scoring)))[::-1]
        k = int(np.floor(TARGET_NAMED * len(confidences)))
        if len(confidences) < MIN_CALIBRATION_PHOTOS:
            value = gallery_threshold(len(gallery))
        else:   # just above the (k+1)-th highest: at most k of them are named
            measured = float(np.nextafter(confidences[k], np.inf))
            value = max(CELEBRITY_THRESHOLD, min(99.95, measured))
        gallery.derived[key] = value
    return gallery.derived[key]


def recognise(gallery: Gallery, vectors: np.ndarray, scoring: Scoring,
              threshold: float | None = None) -> list[tuple[int, float] | None]:
    """For each face: (index of the person, MatchConfidence) when it reaches the threshold
    (the gallery's by default), else None. MatchConfidence is the open-set score on the
    calibrated Similarity scale."""
    if len(gallery) == 0 or len(vectors) == 0:
        return [None] * len(vectors)
    limit = calibrated_threshold(gallery, scoring) if threshold is None else threshold
    best, score = open_set_scores(gallery, vectors, scoring)
    confidence = scoring.from_score(score)
    return [(int(b), float(c)) if c >= limit else None for b, c in zip(best, confidence)]


def celebrity_info(row) -> dict[str, Any]:
    """Name, Urls and (when the operator published it) KnownGender of a gallery row."""
    out: dict[str, Any] = {"Urls": list(row.urls or []), "Name": row.name}
    if row.known_gender:
        out["KnownGender"] = {"Type": row.known_gender}
    return out


@operation("RecognizeCelebrities")
def recognize_celebrities(service: Service, params: dict) -> dict:
    from candor.face.engine import compared_face

    store = store_of(service)
    gallery = store.gallery()
    if len(gallery) == 0:
        raise ResourceNotFound("The celebrity gallery is empty: the operator builds one with "
                               "candor celebrities import (candor ships none)")
    image, faces = service.engine.analyse(request_image(params), attributes=["DEFAULT"],
                                          embed=False)
    faces = sorted(faces, key=lambda f: -f.box.area)
    if faces:
        service.engine.embed(image, faces)  # one batched call for every face
    found = recognise(gallery, np.stack([f.embedding for f in faces]) if faces
                      else np.zeros((0, 128), np.float32), service.scoring)
    rows = store.celebrities_by_key(gallery.keys[m[0]] for m in found if m is not None)
    named, unrecognised = [], []
    for face, match in zip(faces, found):
        wire = compared_face(face).to_dict()
        row = rows.get(int(gallery.keys[match[0]])) if match is not None else None
        if row is None or len(named) >= MAX_CELEBRITIES:
            unrecognised.append(wire)
            continue
        info = celebrity_info(row)
        named.append({"Urls": info["Urls"], "Name": row.name, "Id": row.celebrity_id,
                      "Face": wire, "MatchConfidence": round(match[1], 4),
                      **({"KnownGender": info["KnownGender"]} if "KnownGender" in info else {})})
    return {"CelebrityFaces": named, "UnrecognizedFaces": unrecognised}


@operation("GetCelebrityInfo")
def get_celebrity_info(service: Service, params: dict) -> dict:
    return celebrity_info(store_of(service).celebrity(params["Id"]))


# -- building a gallery ------------------------------------------------------------------
KNOWN_GENDERS = ("Male", "Female", "Nonbinary", "Unlisted")


@dataclass
class PersonInfo:
    """What the operator publishes about a person (the CSV row of ``--info``)."""

    folder: str
    name: str
    urls: list[str] = field(default_factory=list)
    known_gender: str | None = None


#: a cell starting with one of these is a formula to a spreadsheet (CSV injection): a name or
#: URL the gallery hands back to clients and operators must not be one
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: the longest --info CSV read (a person's row is a few hundred bytes)
MAX_INFO_BYTES = 10 * 1024 * 1024


def read_info(path: str | Path) -> dict[str, PersonInfo]:
    """The ``--info`` CSV by folder name: columns ``name`` (required), ``folder`` (default:
    the name), ``urls`` (separated by spaces or ``;``) and ``known_gender`` (Male, Female,
    Nonbinary or Unlisted, as the person publicly states it; empty when unknown). UTF-8, with
    or without the byte-order mark spreadsheets write; every refusal (not a readable file,
    not UTF-8, a broken or oversized row, a cell that is a spreadsheet formula, a URL that is
    not http(s)) is an InvalidParameter naming the line."""
    path = Path(path)
    if not path.is_file():
        raise InvalidParameter(f"{path}: no such file" if not path.exists() else
                               f"{path}: not a file (the --info CSV)")
    if path.stat().st_size > MAX_INFO_BYTES:
        raise InvalidParameter(f"{path}: over {MAX_INFO_BYTES // 2**20} MB: not a gallery's CSV")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return _info_rows(path, csv.DictReader(fh, strict=True))
    except UnicodeDecodeError as exc:
        raise InvalidParameter(f"{path}: not UTF-8 text (byte {exc.start}); save the CSV as "
                               "UTF-8") from None
    except csv.Error as exc:
        raise InvalidParameter(f"{path}: not a well-formed CSV ({exc})") from None


def _info_rows(path: Path, reader: csv.DictReader) -> dict[str, PersonInfo]:
    out: dict[str, PersonInfo] = {}
    fields = {f.strip().lower() for f in reader.fieldnames or []}
    if "name" not in fields:
        raise InvalidParameter(f"{path}: the CSV needs a 'name' column (and optionally "
                               "folder, urls, known_gender)")
    for row in reader:
        line = reader.line_num
        if None in row:
            raise InvalidParameter(f"{path} line {line}: more cells than the header has columns")
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not row.get("name"):
            raise InvalidParameter(f"{path} line {line}: empty name")
        gender = row.get("known_gender") or None
        if gender is not None:
            gender = next((g for g in KNOWN_GENDERS if g.lower() == gender.lower()), None)
            if gender is None:
                raise InvalidParameter(f"{path} line {line}: known_gender must be one of "
                                       f"{', '.join(KNOWN_GENDERS)} or empty")
        urls = [u for u in re.split(r"[;\s]+", row.get("urls", "")) if u]
        for cell in (row["name"], row.get("folder", ""), *urls):
            if cell.startswith(FORMULA_STARTS):
                raise InvalidParameter(f"{path} line {line}: {cell[:40]!r} starts with "
                                       f"{cell[0]!r}, a spreadsheet formula; remove it")
        for url in urls:
            scheme = url.split(":", 1)[0].lower() if re.match(r"^[a-zA-Z][\w+.-]*:", url) else ""
            if scheme not in ("", "http", "https"):
                raise InvalidParameter(f"{path} line {line}: {url[:40]!r} is not an http(s) URL")
        folder = row.get("folder") or row["name"]
        out[folder] = PersonInfo(folder, row["name"], urls, gender)
    return out


def gallery_photos(root: str | Path) -> dict[str, list[Path]]:
    """A folder per person: their photos (JPEG/PNG) by folder name."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidParameter(f"{root} is not a folder")
    return {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            for d in sorted(root.iterdir()) if d.is_dir()}


def embed_people(engine, people: dict[str, list[Path]]) -> dict[str, tuple[list, list]]:
    """Each person's photos through the pipeline (the largest face of each photo), on every
    core: by folder, (embeddings, photo SHA-256s); photos without a face are left out. Each
    embedding is combined with those of the face's GALLERY_VIEWS (import is offline: a gallery
    photo can afford several passes of the network)."""
    from candor.face.augment import combine, embed_views
    from candor.face.pipeline import analyse_many, largest_face

    sources = [(folder, p) for folder, paths in people.items() for p in paths]
    out: dict[str, tuple[list, list]] = {folder: ([], []) for folder in people}
    for item in analyse_many(engine, [p for _, p in sources], attributes=None,
                             select=largest_face):
        if item.error is None and item.faces:
            folder = item.source.parent.name
            face = item.faces[0]
            views = embed_views(engine, item.image.pixels, face.landmarks5, GALLERY_VIEWS)
            out[folder][0].append(combine(face.embedding, views, VIEWS_WEIGHT))
            out[folder][1].append(item.image.sha256)
    return out
