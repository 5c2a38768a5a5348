"""Embeddings of image sets, on every core, cached so that a rerun costs seconds.

Each photo gets one embedding: of the face nearest the image centre (``face="centre"``: the
evaluation sets are crops centred on the labelled person) or of the largest face
(``face="largest"``). Photos where the detector finds no face, or that cannot be read, are
kept with ``found=False`` and a reason: every evaluation counts them, none drops them.

The cache is a SQLite file in the data dir (``eval-embeddings.sqlite``) keyed by the photo's
SHA-256 and by everything that changes an embedding: the face model version, the backend, the
detector, the face choice and the engine's detection resolution. Renaming or moving photos
keeps their cache entries; editing a photo, or changing any of those settings, does not.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor import config
from candor.system import available_cores

FACE_CHOICES = ("centre", "largest")
CACHE_FILE = "eval-embeddings.sqlite"
#: below this many uncached photos the work runs in this process (a pool costs ~2 s to start)
POOL_MIN = 24


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
        "pipeline": _pipeline_signature(engine_mod),
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


# -- the work, one photo at a time (in worker processes) -------------------------------
_engine = None
_face = "centre"


def _init_worker(backend: str, detector: str, face: str) -> None:
    global _engine, _face
    config.single_threaded_children()
    from candor.face.engine import Engine

    _engine = Engine(backend=backend, detector=detector)
    _face = face


def _embed_path(path: str) -> tuple[np.ndarray | None, int, str | None]:
    """(embedding of the chosen face, number of faces found, error) for one photo."""
    from candor.errors import CandorError
    from candor.face.imaging import MAX_S3_IMAGE_BYTES, read_image
    from candor.face.pipeline import central_face

    try:
        image = read_image(path, max_bytes=MAX_S3_IMAGE_BYTES)
        _, faces = _engine.analyse(image, landmarks=False, attributes=None)
    except CandorError as exc:
        return None, 0, f"{exc.code}: {exc.message}"
    except OSError as exc:
        return None, 0, f"unreadable: {exc}"
    if not faces:
        return None, 0, "no face detected"
    if _face == "largest":
        face = faces[0]          # the engine returns faces largest first
    else:
        (face,) = central_face(image, faces)
    _engine.embed(image, [face])
    return face.embedding, len(faces), None


def default_workers() -> int:
    """One worker per core this process may use."""
    return available_cores()


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
    workers = min(workers or default_workers(), max(1, len(jobs)))
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
        if jobs and (workers == 1 or len(jobs) < POOL_MIN):
            _init_worker(settings["backend"], settings["detector"], face)
            for sha, path in jobs:
                finish(sha, _embed_path(path))
        elif jobs:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(settings["backend"], settings["detector"],
                                               face)) as pool:
                results = pool.map(_embed_path, [p for _, p in jobs], chunksize=8)
                for (sha, _), result in zip(jobs, results):
                    finish(sha, result)
    finally:
        if cache:
            if pending:
                cache.put([(s, v, c, e) for s, v, c, e in pending], key)
            cache.close()
    return Embedded(vectors, found, nfaces, errors, shas, settings, cached,
                    time.perf_counter() - t0)
