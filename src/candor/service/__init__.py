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
``search`` (SearchFaces*, SearchUsers*), ``video`` (Start/GetFaceDetection, Start/GetFaceSearch).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from candor.config import Settings
from candor.errors import InvalidParameter
from candor.scoring.similarity import Scoring
from candor.service.validation import validate

Handler = Callable[["Service", dict[str, Any]], dict[str, Any]]
OPERATIONS: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler of Rekognition operation ``name``."""

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

    def call(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run operation ``name`` on ``params`` (checked against botocore's model first) and
        return its response dict."""
        _load_operations()
        handler = OPERATIONS.get(name)
        if handler is None:
            raise InvalidParameter(f"unknown operation {name!r}")
        return handler(self, validate(name, params))


def _load_operations() -> None:
    """Import the operation modules so that they register their handlers (imported here, not
    at the top, because each of them imports :func:`operation` from this module)."""
    from candor.service import collections, detection, faces, search, users, video  # noqa: F401
