"""Many images through the engine on every core: decode and detect on one pool, embed in
batches on another.

Per image, candor's work splits in two kinds. Decoding, detection (HOG or the CNN),
landmarks and cutting the aligned chips are per-image and run in native code that releases
the GIL, so a pool of threads overlaps them. The ResNet embedding is the same network for
every face and runs best in batches, in ONNX Runtime on its own thread. While one batch is
embedded, the pool prepares the next images, so both halves stay busy::

    from candor.face.engine import Engine
    from candor.face.pipeline import analyse_many, central_face

    for item in analyse_many(Engine(), paths, select=central_face):
        if item.error:            # a CandorError (unreadable, too large, ...) for that image
            ...
        item.faces[0].embedding   # the same vector Engine.analyse(..., embed=True) gives

Results come back in input order, one :class:`Analysed` per input, and the faces and
embeddings are exactly those of the sequential path (``Engine.analyse`` then
``Engine.embed``); only the scheduling differs. Memory stays bounded: a few images ahead of
the consumer, and a batch is embedded as soon as it holds ``batch_faces`` faces or its images
hold ``max_batch_bytes`` of pixels.

:func:`map_ordered` is the generic half: a function over items on a thread pool, results in
input order, with bounded read-ahead (``candor index`` decodes photos with it while the
service stores the previous ones).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from candor.errors import CandorError
from candor.face.imaging import Image
from candor.system import available_cores

T = TypeVar("T")
R = TypeVar("R")

#: faces per embedding call (each is embedded twice, chip and mirror; ONNX Runtime's cost
#: per chip is flat from a batch of about 8 up, and smaller batches start the embedder sooner)
BATCH_FACES = 16
#: a batch is also closed when its images hold this many bytes of pixels (large photos)
MAX_BATCH_BYTES = 256 * 1024 * 1024
#: the embedder's threads per call while it keeps up with the pool: the pool keeps the other
#: cores busy, and one ONNX Runtime thread costs ~15% less CPU per chip than two (no hand-offs);
#: once this thread had to wait for the embedder (many faces per photo: it is the bottleneck),
#: the next batch gets all the cores. Same embeddings either way.
EMBED_THREADS = 1


@dataclass
class Outcome(Generic[T, R]):
    """One item's result from :func:`map_ordered`: ``value``, or the ``error`` it raised."""

    item: T
    value: R | None = None
    error: BaseException | None = None


def map_ordered(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None,
                ahead: int | None = None,
                errors: tuple[type[BaseException], ...] = (CandorError, OSError),
                ) -> Iterator[Outcome[T, R]]:
    """``fn(item)`` for every item on ``workers`` threads (default: the cores available), in
    input order, at most ``ahead`` items in flight (default: 2 per worker). Exceptions of the
    ``errors`` types become the item's ``error``; any other exception is raised here."""
    workers = workers or available_cores()
    ahead = max(1, ahead or 2 * workers)
    source = iter(items)
    window: deque[tuple[T, Future]] = deque()

    def call(item: T) -> Outcome[T, R]:
        try:
            return Outcome(item, value=fn(item))
        except errors as exc:
            return Outcome(item, error=exc)

    pool = ThreadPoolExecutor(workers, thread_name_prefix="candor-map")
    try:
        while True:
            while len(window) < ahead:
                try:
                    item = next(source)
                except StopIteration:
                    break
                window.append((item, pool.submit(call, item)))
            if not window:
                return
            _, future = window.popleft()
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ faces of many images


@dataclass
class Analysed:
    """One input's faces (as ``Engine.analyse`` returns them, embedded when asked; only the
    selected ones when ``select`` was given), how many the detector found before selection,
    or the error that image raised (then ``image`` is None and ``faces`` empty)."""

    source: Any
    image: Image | None
    faces: list = field(default_factory=list)
    error: BaseException | None = None
    found: int = 0


def largest_face(image: Image, faces: Sequence) -> list:
    """Select the largest face by its reported box (the face search uses)."""
    return [max(faces, key=lambda f: f.box.area)] if faces else []


def central_face(image: Image, faces: Sequence) -> list:
    """Select the face nearest the image centre (LFW's protocol: the labelled person is
    centred)."""
    if not faces:
        return []
    cx, cy = image.width / 2, image.height / 2

    def off_centre(face) -> float:
        b = face.box
        return ((b.left + b.right) / 2 - cx) ** 2 + ((b.top + b.bottom) / 2 - cy) ** 2

    return [min(faces, key=off_centre)]


#: the face of a photo to use when one is wanted, by name: what search, identification,
#: ``candor index`` tooling and the evaluation (``candor eval``) all mean by it
FACE_SELECTORS: dict[str, Callable[[Image, Sequence], list]] = {
    "largest": largest_face, "centre": central_face}


def analyse_many(engine, sources: Iterable[Any],
                 attributes: Iterable[str] | Callable[[Any], Iterable[str]] | None = ("DEFAULT",),
                 *, embed: bool = True,
                 landmarks: bool = False, max_faces: int | None = None,
                 select: Callable[[Image, Sequence], Sequence] | None = None,
                 load: Callable[[Any], Image] | None = None,
                 workers: int | None = None, batch_faces: int = BATCH_FACES,
                 max_batch_bytes: int = MAX_BATCH_BYTES,
                 embed_threads: int | None = EMBED_THREADS) -> Iterator[Analysed]:
    """:meth:`Engine.analyse` over many images (paths, bytes or decoded Images), in input
    order, on both pools: ``workers`` threads (default: one more than the cores available,
    so that a thread holding the GIL for Python work does not idle a core) decode, detect,
    find landmarks and cut chips; one thread embeds the chips of many images per call.

    ``attributes`` may be a function of the source (each request names its own).
    ``landmarks`` is ``Engine.analyse``'s (default False here: bulk jobs need boxes and
    embeddings, not the 68 points); ``select(image, faces)`` keeps only some faces (e.g.
    :func:`largest_face`, :func:`central_face`), and only those are embedded. ``load``
    decodes a source (default :func:`candor.face.imaging.load_image`, Rekognition's 5 MB limit;
    e.g. ``lambda p: read_image(p, max_bytes=MAX_S3_IMAGE_BYTES)`` for 15 MB).
    ``embed_threads``: the backend's threads per embedding call while the embedder keeps up
    (:data:`EMBED_THREADS`; None: always the backend's default, all cores).
    """
    from candor.face.engine import MAX_FACES

    wanted = attributes if callable(attributes) or attributes is None else list(attributes)
    limit = MAX_FACES if max_faces is None else max_faces

    def prepare(source: Any) -> tuple[Analysed, np.ndarray | None]:
        image = load(source) if load is not None else source
        image, faces = engine.analyse(image, wanted(source) if callable(wanted) else wanted,
                                      embed=False, max_faces=limit, landmarks=landmarks)
        found = len(faces)
        if select is not None:
            faces = list(select(image, faces))
        chips = engine.chips(image, faces) if embed and faces else None
        return Analysed(source, image, list(faces), found=found), chips

    def embed_batch(chips: list[np.ndarray], threads: int | None) -> np.ndarray:
        return engine.embed_chips(np.concatenate(chips), threads=threads)

    embedder = ThreadPoolExecutor(1, thread_name_prefix="candor-embed")
    inflight: deque[tuple[list[Analysed], list[Analysed], Future | None]] = deque()
    batch: list[Analysed] = []
    with_faces: list[Analysed] = []
    chips: list[np.ndarray] = []
    n_faces = n_bytes = 0
    waited = False  # since the last batch was closed, this thread waited for the embedder

    def close_batch() -> None:
        nonlocal batch, with_faces, chips, n_faces, n_bytes, waited
        future = (embedder.submit(embed_batch, chips, None if waited else embed_threads)
                  if chips else None)
        waited = False
        inflight.append((batch, with_faces, future))
        batch, with_faces, chips, n_faces, n_bytes = [], [], [], 0, 0

    def finish(entry) -> Iterator[Analysed]:
        items, embedded, future = entry
        if future is not None:
            vectors = iter(future.result())
            for item in embedded:
                for face in item.faces:
                    face.embedding = next(vectors)
        yield from items

    try:
        for outcome in map_ordered(prepare, sources, workers=workers or available_cores() + 1):
            if outcome.error is not None:
                batch.append(Analysed(outcome.item, None, [], outcome.error))
            else:
                item, item_chips = outcome.value
                batch.append(item)
                if item_chips is not None and len(item_chips):
                    with_faces.append(item)
                    chips.append(item_chips)
                    n_faces += len(item_chips)
                n_bytes += item.image.pixels.nbytes
            if n_faces >= batch_faces or n_bytes >= max_batch_bytes:
                close_batch()
            # hand back finished batches; wait for the oldest only when two are queued, so
            # the embedder always has the next batch while this thread gathers another
            while inflight and (len(inflight) > 1 or inflight[0][2] is None
                                or inflight[0][2].done()):
                waited |= inflight[0][2] is not None and not inflight[0][2].done()
                yield from finish(inflight.popleft())
        if batch:
            close_batch()
        while inflight:
            yield from finish(inflight.popleft())
    finally:
        embedder.shutdown(wait=True, cancel_futures=True)
