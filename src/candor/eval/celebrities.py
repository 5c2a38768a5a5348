"""Celebrity recognition measured on the operator's own photos: a gallery built from a folder per
person with one photo each held out, and photos of people outside the gallery.

Reported: the share of held-out photos for which recognition names the right person, and the
share of outsiders' photos for which it names anyone, at the gallery's threshold (or one given).
Each photo's embedding comes through the evaluation cache (:mod:`candor.eval.embeddings`, every
core); the gallery is a real store in a temporary folder and recognition is the code
RecognizeCelebrities runs (:func:`candor.service.celebrities.recognise`).
``bench/celebrities.py`` runs it on LFW View 1; ``candor celebrities evaluate`` on any folders.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from candor import config
from candor.eval.embeddings import (
    CACHE_FILE,
    Cache,
    _settings_key,
    embed_images,
    file_sha256,
    settings_for,
)
from candor.face.augment import combine, embed_views
from candor.face.engine import FACE_MODEL_VERSION
from candor.scoring.similarity import Scoring
from candor.service.celebrities import GALLERY_VIEWS, VIEWS_WEIGHT, calibrated_threshold, recognise
from candor.store import Store


def embeddings(paths: Sequence[Path], data_dir=None, face: str = "centre",
               detector: str | None = None) -> dict[Path, np.ndarray | None]:
    """One embedding per photo (None where no face was found), cached."""
    emb = embed_images(list(paths), data_dir=data_dir, face=face, detector=detector)
    return {p: (emb.embeddings[i] if emb.found[i] else None) for i, p in enumerate(paths)}


def view_embeddings(paths: Sequence[Path], views: Sequence[str], data_dir=None,
                    face: str = "centre", detector: str | None = None,
                    ) -> dict[str, dict[Path, np.ndarray]]:
    """{view: {photo: unit embedding of that view}} (:mod:`candor.face.augment`) of the face
    :func:`embeddings` embeds; cached in the evaluation cache, under its settings key plus the
    view's name. Photos without a face are left out."""
    from candor.face.engine import Engine
    from candor.face.imaging import MAX_S3_IMAGE_BYTES, read_image
    from candor.face.pipeline import FACE_SELECTORS, analyse_many

    settings = settings_for(None, detector, face)
    key = {v: f"{_settings_key(settings)}|augment={v}" for v in views}
    cache = Cache(config.data_dir(data_dir) / CACHE_FILE)
    try:
        shas = {p: file_sha256(p) for p in paths}
        known = {v: cache.get(list(shas.values()), key[v]) for v in views}
        todo = [p for p in paths if any(shas[p] not in known[v] for v in views)]
        if todo:
            engine = Engine(backend=settings["backend"], detector=settings["detector"])
            rows: dict[str, list] = {v: [] for v in views}
            for item in analyse_many(engine, todo, attributes=None, embed=False,
                                     select=FACE_SELECTORS[face],
                                     load=lambda p: read_image(p, max_bytes=MAX_S3_IMAGE_BYTES)):
                sha = shas[item.source]
                if item.error is not None or not item.faces:
                    for v in views:
                        rows[v].append((sha, None, 0, "no face detected"))
                    continue
                vectors = embed_views(engine, item.image.pixels, item.faces[0].landmarks5, views)
                for v, vec in zip(views, vectors):
                    rows[v].append((sha, vec, 1, None))
                if len(rows[views[0]]) >= 50:
                    for v in views:
                        cache.put(rows[v], key[v])
                        rows[v] = []
            for v in views:
                cache.put(rows[v], key[v])
            known = {v: cache.get(list(shas.values()), key[v]) for v in views}
    finally:
        cache.close()
    return {v: {p: known[v][shas[p]][0] for p in paths
                if shas[p] in known[v] and known[v][shas[p]][0] is not None} for v in views}


def gallery_embeddings(paths: Sequence[Path], data_dir=None, face: str = "centre",
                       detector: str | None = None, views: Sequence[str] = GALLERY_VIEWS,
                       weight: float = VIEWS_WEIGHT) -> dict[Path, np.ndarray | None]:
    """Each photo's embedding as ``candor celebrities import`` stores it: its plain
    embedding combined with its views' (:func:`candor.face.augment.combine`)."""
    plain = embeddings(paths, data_dir, face, detector)
    if not views or not weight:
        return plain
    extra = view_embeddings(paths, views, data_dir, face, detector)
    return {p: (None if v is None else
                combine(v, [extra[u][p] for u in views if p in extra[u]], weight))
            for p, v in plain.items()}


def measure(by_person: dict[str, list[Path]], held: dict[str, Path], outsiders: Sequence[Path],
            vectors: dict[Path, np.ndarray | None], scoring: Scoring | None = None,
            threshold: float | None = None,
            gallery_vectors: dict[Path, np.ndarray | None] | None = None) -> dict:
    """Gallery of every person's photos but ``held[person]`` (their ``gallery_vectors``, as
    import stores them; default ``vectors``); recognise the held-out photos and the outsiders'
    (their ``vectors``, as RecognizeCelebrities embeds them). A photo without a face counts as
    not named."""
    scoring = scoring or Scoring()
    stored = vectors if gallery_vectors is None else gallery_vectors
    with tempfile.TemporaryDirectory(prefix="candor-eval-celebrities-") as tmp:
        store = Store(tmp)
        try:
            for person, photos in by_person.items():
                kept = [p for p in photos if p != held.get(person) and stored.get(p) is not None]
                if kept:
                    store.add_celebrity(person, [], None, [stored[p] for p in kept],
                                        [None] * len(kept), FACE_MODEL_VERSION)
            gallery = store.gallery()
            rows = store.celebrities_by_key(gallery.keys)
            names = [rows[int(k)].name for k in gallery.keys]

            def named(paths: Sequence[Path]) -> dict[Path, str | None]:
                out: dict[Path, str | None] = {p: None for p in paths}
                found = [p for p in paths if vectors.get(p) is not None]
                if found and len(gallery):
                    for p, m in zip(found, recognise(gallery, np.stack([vectors[p] for p in found]),
                                                     scoring, threshold)):
                        out[p] = names[m[0]] if m is not None else None
                return out

            people = [p for p in held if p in by_person]
            got = named([held[p] for p in people])
            right = sum(got[held[p]] == p for p in people)
            strangers = named(list(outsiders))
        finally:
            store.close()
    wrongly = sum(v is not None for v in strangers.values())
    return {"people": len(gallery), "held_out": len(people),
            "right": right / max(1, len(people)), "outsiders": len(outsiders),
            "outsiders_named": wrongly / max(1, len(outsiders)),
            "threshold": threshold if threshold is not None else calibrated_threshold(gallery, scoring)}
