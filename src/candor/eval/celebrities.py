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

from candor.eval.embeddings import embed_images
from candor.face.engine import FACE_MODEL_VERSION
from candor.scoring.similarity import Scoring
from candor.service.celebrities import gallery_threshold, recognise
from candor.store import Store


def embeddings(paths: Sequence[Path], data_dir=None, face: str = "centre",
               detector: str | None = None) -> dict[Path, np.ndarray | None]:
    """One embedding per photo (None where no face was found), cached."""
    emb = embed_images(list(paths), data_dir=data_dir, face=face, detector=detector)
    return {p: (emb.embeddings[i] if emb.found[i] else None) for i, p in enumerate(paths)}


def measure(by_person: dict[str, list[Path]], held: dict[str, Path], outsiders: Sequence[Path],
            vectors: dict[Path, np.ndarray | None], scoring: Scoring | None = None,
            threshold: float | None = None) -> dict:
    """Gallery of every person's photos but ``held[person]``; recognise the held-out photos and
    the outsiders'. A photo without a face counts as not named."""
    scoring = scoring or Scoring()
    with tempfile.TemporaryDirectory(prefix="candor-eval-celebrities-") as tmp:
        store = Store(tmp)
        try:
            for person, photos in by_person.items():
                kept = [p for p in photos if p != held.get(person) and vectors.get(p) is not None]
                if kept:
                    store.add_celebrity(person, [], None, [vectors[p] for p in kept],
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
            "threshold": threshold if threshold is not None else gallery_threshold(len(gallery))}
