"""The operations, with Rekognition semantics, transport-free: one function per operation.

Every door (Python API, CLI, HTTP) calls :meth:`Service.call` with the operation's
Rekognition name and its request as a dict of wire names (``{"Image": {"Bytes": b"..."}}``,
bytes already base64-decoded or an already decoded Image), and gets the response dict back.
``call`` checks the request against botocore's model (:mod:`candor.service.validation`) before
the handler runs, so every door gets the same InvalidParameterException text and handlers see
only valid, normalised requests. Governance wraps ``call``, so no door can bypass it.

Operations live in one module per family and register themselves with :func:`operation`:
``detection`` (DetectFaces, CompareFaces), ``collections`` (Create/Delete/List/Describe),
``faces`` (IndexFaces, ListFaces, DeleteFaces), ``users`` (CreateUser ... DisassociateFaces),
``search`` (SearchFaces*, SearchUsers*), ``identify`` (SearchFacesInImage, candor's own),
``celebrities`` (RecognizeCelebrities, GetCelebrityInfo), ``video`` (Start/GetFaceDetection,
Start/GetFaceSearch), ``celebrity_video`` (Start/GetCelebrityRecognition), ``reviews``
(GetReviewResult, candor's own).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from candor.config import Settings
from candor.errors import InvalidParameter
from candor.scoring.similarity import Scoring
from candor.service.caller import Caller, acting_as, current_caller, resolve_collection
from candor.service.validation import validate

Handler = Callable[["Service", dict[str, Any]], dict[str, Any]]
OPERATIONS: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler of Rekognition operation ``name``. The operation must
    have a complete descriptor in :mod:`candor.service.operations` (the table the gate, the
    policy, the S3 loader and the HTTP door read): a handler without one is refused here, at
    import, rather than served ungoverned."""
    from candor.service.operations import spec

    descriptor = spec(name)
    if descriptor is None:
        raise TypeError(f"operation {name!r} has no descriptor in candor.service.operations")
    problems = descriptor.problems()
    if problems:
        raise TypeError(f"operation {name!r} has an incomplete descriptor: " + "; ".join(problems))

    def register(fn: Handler) -> Handler:
        OPERATIONS[name] = fn
        return fn

    return register


class Service:
    """One candor instance: its settings (data directory, database, model backend, scoring)
    and the engine over them. ``data_dir``, ``backend`` and ``detector`` override ``settings``
    (by default read from the environment by :meth:`Settings.load`)."""

    def __init__(self, data_dir: str | os.PathLike | None = None, backend: str | None = None,
                 detector: str | None = None, settings: Settings | None = None) -> None:
        base = settings if settings is not None else Settings.load()
        self.settings = base.with_(data_dir=Path(data_dir) if data_dir else None,
                                   backend=backend, detector=detector)
        self.backend_name = self.settings.backend
        self.detector = self.settings.detector
        self.scoring = Scoring.from_settings(self.settings)

    @cached_property
    def data_dir(self) -> Path:
        return self.settings.ensure_data_dir()

    @cached_property
    def engine(self):
        from candor.face.engine import Engine

        return Engine(backend=self.backend_name, detector=self.detector, scoring=self.scoring)

    def call(self, name: str, params: dict[str, Any] | None = None,
             caller: Caller | None = None) -> dict[str, Any]:
        """Run operation ``name`` on ``params`` (checked against botocore's model first) for
        ``caller`` (its organisation's collections; None: whoever the context acts as, see
        :func:`~candor.service.caller.acting_as`, else the operator, who sees all) and return
        its response dict."""
        _load_operations()
        handler = OPERATIONS.get(name)
        if handler is None:
            raise InvalidParameter(f"unknown operation {name!r}")
        request = validate(name, params)
        with acting_as(caller if caller is not None else current_caller()):
            return handler(self, request)

    def index_faces_many(self, requests: Iterable[Any], **kw: Any) -> Iterator[Any]:
        """IndexFaces for many ``(item, params)`` requests on the pipeline, stored in groups
        (:mod:`candor.service.indexing`; ``candor index``). Behind the gate,
        :meth:`~candor.governance.gate.BoundGate.index_faces_many` decides and records each."""
        from candor.service.indexing import index_faces_many

        return index_faces_many(self, requests, **kw)

    def indexed_image_hashes(self, collection_id: str, hashes: Iterable[str],
                             caller: Caller | None = None) -> set[str]:
        """Which of the image SHA-256 digests ``hashes`` already have faces in ``caller``'s
        collection (``candor index`` skips those photos unless ``--reindex``);
        ResourceNotFound if it has no such collection.

        Not a Rekognition operation and not audited: it tells the caller only whether photos
        it holds are already in a collection it may use (tenancy applies as to any call)."""
        store = self._open_store()
        coll = resolve_collection(store, collection_id, caller=caller or current_caller())
        return store.indexed_image_hashes(coll.id, hashes)

    def warm_index(self, collection_id: str, caller: Caller | None = None) -> None:
        """Bring ``caller``'s collection's vector index up to date and save it, so that the
        next process (a ``candor search`` after ``candor index``) loads it instead of reading
        every embedding. A cache operation: it reads nothing a caller sees."""
        from candor.errors import ResourceNotFound

        store = self._open_store()
        try:
            coll = resolve_collection(store, collection_id, caller=caller or current_caller())
        except (ResourceNotFound, InvalidParameter):
            return
        store.face_index(coll.id)
        store.save_indexes()

    def _open_store(self):
        from candor.service.common import store_of

        return store_of(self)


def _load_operations() -> None:
    """Import the operation modules so that they register their handlers (imported here, not
    at the top, because each of them imports :func:`operation` from this module)."""
    from candor.service import (  # noqa: F401
        celebrities,
        celebrity_video,
        collections,
        detection,
        faces,
        identify,
        reviews,
        search,
        users,
        video,
    )
