"""Embeddings of image sets, on every core, cached so that a rerun costs seconds.

Each photo gets one embedding: of the face nearest the image centre (``face="centre"``: the
evaluation sets are crops centred on the labelled person) or of the largest face
(``face="largest"``), chosen by :data:`candor.face.pipeline.FACE_SELECTORS`, the one definition
the service, ``candor index`` and the evaluation share. The photos go through the engine's
pipeline (:func:`candor.face.pipeline.analyse_many`: decoding and detection on a thread pool,
embedding in batches), not a pool of processes that would each load the models. Photos where
the detector finds no face, or that cannot be read, are kept with ``found=False`` and a
reason: every evaluation counts them, none drops them.

The cache is a SQLite file in the data dir (``eval-embeddings.sqlite``) keyed by the photo's
SHA-256 and by everything that changes an embedding: the face model version, the backend, the
detector, the face choice and the engine's detection resolution. Renaming or moving photos
keeps their cache entries; editing a photo, or changing any of those settings, does not.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor import config
from candor.system import available_cores

log = logging.getLogger(__name__)

#: which face of a photo is embedded: the pipeline's selectors, by name
FACE_CHOICES = ("centre", "largest")
CACHE_FILE = "eval-embeddings.sqlite"
#: part of the cache key: 2 = the largest face by its reported box (the pipeline's
#: ``largest_face``), where 1 took the detector's largest box
SELECTION_VERSION = 2


@dataclass
class Embedded:
    """One embedding per photo (zero rows where ``found`` is False)."""

    embeddings: np.ndarray     # (n, 128) float32, unit rows where found
    found: np.ndarray          # (n,) bool
    faces: np.ndarray          # (n,) int: faces the detector found in the photo
    errors: list[str | None]   # why a photo has no embedding (None where found)
    sha256: list[str]
    settings: dict             # backend, detector, face, model version
    cached: int = 0            # photos that came from the cache
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.found)

    @property
    def missing(self) -> int:
        return int((~self.found).sum())


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def settings_for(backend: str | None = None, detector: str | None = None,
                 face: str = "centre") -> dict:
    """What an embedding depends on, resolved to names (defaults as the engine's)."""
    from candor.face import engine as engine_mod

    if face not in FACE_CHOICES:
        raise ValueError(f"face must be one of {FACE_CHOICES}, not {face!r}")
    engine = engine_mod.Engine(backend=backend, detector=detector)  # resolves the defaults
    return {
        "model_version": engine_mod.FACE_MODEL_VERSION,
        "backend": engine.backend.name,
        "detector": engine.detector,
        "face": face,
        "pipeline": _pipeline_signature(engine_mod) + f";select={SELECTION_VERSION}",
    }


def _pipeline_signature(module) -> str:
    """The engine's tuning constants (detection resolution, upsampling policy, ...): a change
    to any of them changes which faces are found and how they are aligned."""
    parts = []
    for name in sorted(vars(module)):
        value = getattr(module, name)
        if name.isupper() and isinstance(value, (int, float, str, tuple, dict)) \
                and not isinstance(value, bool) and name not in ("FACE_MODEL_VERSION",):
            parts.append(f"{name}={value!r}")
    return ";".join(parts)


def _settings_key(settings: dict) -> str:
    return "|".join(f"{k}={settings[k]}" for k in sorted(settings))


# -- the cache -------------------------------------------------------------------------
class Cache:
    """sha256 + settings -> embedding (or the reason there is none)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA secure_delete = ON")  # a replaced entry leaves no bytes behind
        self.db.execute("CREATE TABLE IF NOT EXISTS embeddings (sha256 TEXT NOT NULL, "
                        "settings TEXT NOT NULL, vector BLOB, faces INTEGER NOT NULL, "
                        "error TEXT, PRIMARY KEY (sha256, settings))")

    def get(self, shas: Sequence[str], key: str) -> dict[str, tuple]:
        out: dict[str, tuple] = {}
        wanted = list(dict.fromkeys(shas))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            rows = self.db.execute(
                f"SELECT sha256, vector, faces, error FROM embeddings WHERE settings = ? AND "
                f"sha256 IN ({','.join('?' * len(chunk))})", [key, *chunk])
            for sha, vector, faces, error in rows:
                vec = np.frombuffer(vector, np.float32).copy() if vector is not None else None
                out[sha] = (vec, faces, error)
        return out

    def put(self, rows: list[tuple[str, np.ndarray | None, int, str | None]], key: str) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)",
            [(sha, key, None if vec is None else np.asarray(vec, np.float32).tobytes(), faces,
              error) for sha, vec, faces, error in rows])
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def forget_photos(data_dir: Path, shas: Sequence[str | None]) -> int:
    """Remove the cached embeddings of these photos (by SHA-256) from the cache in ``data_dir``,
    leaving no copy in its files: the store calls this when faces indexed from them are
    deleted (erasure, DeleteFaces, retention), since the cache is keyed the same way. Deleted
    rows are zeroed (``secure_delete``) and the log emptied. Returns how many rows went."""
    path = Path(data_dir) / CACHE_FILE
    wanted = sorted({s for s in shas if s})
    if not wanted or not path.exists():
        return 0
    db = sqlite3.connect(str(path), timeout=60)
    try:
        db.execute("PRAGMA secure_delete = ON")
        removed = 0
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            removed += db.execute(f"DELETE FROM embeddings WHERE sha256 IN "
                                  f"({','.join('?' * len(chunk))})", chunk).rowcount
        db.commit()
        if removed:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed
    except sqlite3.Error as exc:  # a cache: a broken one must not fail the deletion
        log.warning("could not remove deleted photos from the evaluation cache: %s", exc)
        return 0
    finally:
        db.close()


# -- the work: the engine's pipeline ----------------------------------------------------
def _embed_all(paths: Sequence[str], settings: dict, face: str, workers: int | None,
               ) -> Iterator[tuple[np.ndarray | None, int, str | None]]:
    """(embedding of the chosen face, number of faces found, error) per photo, in order:
    decoded and detected on a thread pool, the chosen faces embedded in batches
    (:func:`candor.face.pipeline.analyse_many`, the same path as ``candor index``); the face
    is chosen by the pipeline's own definition (:data:`candor.face.pipeline.FACE_SELECTORS`)."""
    from candor.errors import CandorError
    from candor.face.engine import Engine
    from candor.face.imaging import MAX_S3_IMAGE_BYTES, read_image
    from candor.face.pipeline import FACE_SELECTORS, analyse_many

    engine = Engine(backend=settings["backend"], detector=settings["detector"])
    for item in analyse_many(engine, paths, attributes=None, landmarks=False,
                             select=FACE_SELECTORS[face], workers=workers,
                             load=lambda p: read_image(p, max_bytes=MAX_S3_IMAGE_BYTES)):
        if isinstance(item.error, CandorError):
            yield None, 0, f"{item.error.code}: {item.error.message}"
        elif item.error is not None:
            yield None, 0, f"unreadable: {item.error}"
        elif not item.faces:
            yield None, 0, "no face detected"
        else:
            yield item.faces[0].embedding, item.found, None


def default_workers() -> int:
    """Decoding and detection threads: one more than the cores this process may use (the
    pipeline's default)."""
    return available_cores() + 1


def embed_images(paths: Sequence[str | os.PathLike], *, backend: str | None = None,
                 detector: str | None = None, face: str = "centre",
                 data_dir: str | os.PathLike | None = None, workers: int | None = None,
                 use_cache: bool = True,
                 progress: Callable[[int, int], None] | None = None) -> Embedded:
    """Embed every photo (cached ones from the cache); ``progress(done, total)`` is called as
    photos complete."""
    t0 = time.perf_counter()
    settings = settings_for(backend, detector, face)
    key = _settings_key(settings)
    paths = [str(p) for p in paths]
    shas: list[str] = []
    for p in paths:
        try:
            shas.append(file_sha256(p))
        except OSError:
            shas.append("unreadable:" + p)
    n = len(paths)
    vectors = np.zeros((n, 128), np.float32)
    found = np.zeros(n, bool)
    nfaces = np.zeros(n, int)
    errors: list[str | None] = [None] * n
    cache = Cache(config.data_dir(data_dir) / CACHE_FILE) if use_cache else None
    known = cache.get([s for s in shas if not s.startswith("unreadable:")], key) if cache else {}

    def place(i: int, result: tuple) -> None:
        vec, count, error = result
        nfaces[i] = count
        if vec is None:
            errors[i] = error or "no face detected"
        else:
            vectors[i], found[i] = vec, True

    todo: dict[str, list[int]] = {}
    for i, sha in enumerate(shas):
        if sha.startswith("unreadable:"):
            place(i, (None, 0, "unreadable file"))
        elif sha in known:
            place(i, known[sha])
        else:
            todo.setdefault(sha, []).append(i)
    cached = n - sum(len(v) for v in todo.values())
    done = cached
    if progress:
        progress(done, n)
    jobs = [(sha, paths[idx[0]]) for sha, idx in todo.items()]
    pending: list[tuple] = []

    def finish(sha: str, result: tuple) -> None:
        nonlocal done
        for i in todo[sha]:
            place(i, result)
        done += len(todo[sha])
        pending.append((sha, *result))
        if cache and len(pending) >= 200:
            cache.put([(s, v, c, e) for s, v, c, e in pending], key)
            pending.clear()
        if progress:
            progress(done, n)

    try:
        for (sha, _), result in zip(jobs, _embed_all([p for _, p in jobs], settings, face,
                                                      workers)):
            finish(sha, result)
    finally:
        if cache:
            if pending:
                cache.put([(s, v, c, e) for s, v, c, e in pending], key)
            cache.close()
    return Embedded(vectors, found, nfaces, errors, shas, settings, cached,
                    time.perf_counter() - t0)
