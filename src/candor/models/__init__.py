"""Model backends: a registry from backend name to factory; each is made once per process.

Backends import ``candor.models.base`` (the interface) and ``candor.models.files``, never this
package, so the registry depends on the backends and not the other way round.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache

from candor.errors import InvalidParameter
from candor.models.base import Backend, Detection
from candor.models.files import model_path

__all__ = ["Backend", "Detection", "BACKENDS", "FACTORIES", "get_backend", "model_path"]

_lock = threading.Lock()


def _dlib() -> Backend:
    from candor.models.dlib_backend import DlibBackend

    return DlibBackend()


def _onnx() -> Backend:
    from candor.models.onnx_backend import OnnxBackend

    # the ONNX backend runs dlib's HOG, landmarks and chips: share the one dlib instance
    return OnnxBackend(reference=lambda: get_backend("dlib"))


FACTORIES: dict[str, Callable[[], Backend]] = {"dlib": _dlib, "onnx": _onnx}
BACKENDS = tuple(FACTORIES)


@cache
def _load(name: str) -> Backend:
    factory = FACTORIES.get(name)
    if factory is None:
        raise InvalidParameter(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    return factory()


def get_backend(name: str) -> Backend:
    """The process-wide instance of backend ``name`` (``dlib`` or ``onnx``)."""
    with _lock:
        return _load(name)
