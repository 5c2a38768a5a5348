"""Model backends, chosen by name; each is loaded once per process."""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

from candor.errors import InvalidParameter, ModelUnavailable
from candor.models.base import Backend, Detection

__all__ = ["Backend", "Detection", "BACKENDS", "get_backend", "model_path"]

BACKENDS = ("dlib", "onnx")

_lock = threading.Lock()


def model_path(name: str) -> Path:
    """Path of a model file shipped by the ``face_recognition_models`` package (never downloaded).

    The package's own ``__init__`` needs ``pkg_resources``; we only need its folder, so we
    locate it without importing it.
    """
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "face_recognition_models is not installed: pip install face_recognition_models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise ModelUnavailable(f"model file missing from face_recognition_models: {path}")
    return path


@cache
def _load(name: str) -> Backend:
    if name == "dlib":
        from candor.models.dlib_backend import DlibBackend

        return DlibBackend()
    if name == "onnx":
        from candor.models.onnx_backend import OnnxBackend  # type: ignore[import-not-found]

        return OnnxBackend()
    raise InvalidParameter(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


def get_backend(name: str) -> Backend:
    """The process-wide instance of backend ``name`` (``dlib`` or ``onnx``)."""
    with _lock:
        return _load(name)
