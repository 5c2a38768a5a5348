"""Where the shipped model files are (never downloaded)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from candor.errors import ModelUnavailable


@functools.cache
def model_path(name: str) -> Path:
    """Path of a model file shipped by the ``face_recognition_models`` package (found once per
    name: asking importlib for the package's folder on every landmark call cost ~6% of the HTTP
    server's CPU).

    The package's own ``__init__`` needs ``pkg_resources``; we only need its folder, so we
    locate it without importing it.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "face_recognition_models is not installed: pip install face_recognition_models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise ModelUnavailable(f"model file missing from face_recognition_models: {path}")
    return path
