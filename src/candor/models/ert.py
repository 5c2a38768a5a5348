"""dlib's shape predictors evaluated by candor's C code (``_ert.c``) instead of dlib's binding.

Same model files, same points: ``_ert.c`` repeats dlib's arithmetic step by step
(tests/test_ert.py compares every point with dlib's on LFW faces). Two reasons:

- dlib's binding holds the GIL for the whole prediction (~3 ms a face for the 5 points, ~6 ms
  for the 68), so the landmarks of one request or one video frame stopped every other thread;
  ctypes releases the GIL for the call.
- it is faster: the trees are walked over a flat array (docs/engine.md, "Landmarks").

When the extension was not built (a source install without a C compiler), :func:`available`
is false and the dlib backend keeps using dlib's own predictor.
"""

from __future__ import annotations

import ctypes
import importlib.util
import threading
from pathlib import Path

import numpy as np

from candor.errors import DlibFormatError
from candor.models.base import Detection

_lock = threading.Lock()
_models: dict[str, ShapePredictor] = {}


def _library() -> ctypes.CDLL | None:
    spec = importlib.util.find_spec("candor.models._ert")
    if spec is None or not spec.origin:
        return None
    lib = ctypes.CDLL(spec.origin)
    lib.ert_load.restype = ctypes.c_void_p
    lib.ert_load.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    lib.ert_free.argtypes = [ctypes.c_void_p]
    lib.ert_points.argtypes = [ctypes.c_void_p]
    lib.ert_predict.restype = ctypes.c_int
    lib.ert_predict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_int, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int,
                                ctypes.c_void_p]
    return lib


try:
    _LIB = _library()
except OSError:  # built for another platform, or removed: dlib's own predictor instead
    _LIB = None


def available() -> bool:
    """Whether the C shape predictor was built with this installation."""
    return _LIB is not None


class ShapePredictor:
    """One dlib ``.dat`` shape predictor, parsed once; safe to call from many threads at once
    (the model is read-only, each call has its own scratch memory)."""

    def __init__(self, data: bytes) -> None:
        if _LIB is None:
            raise RuntimeError("candor.models._ert was not built")
        error = ctypes.create_string_buffer(200)
        handle = _LIB.ert_load(data, len(data), error, len(error))
        if not handle:
            raise DlibFormatError(f"shape predictor: {error.value.decode()}")
        self._handle = handle
        self.points = int(_LIB.ert_points(handle))

    def __del__(self) -> None:
        if getattr(self, "_handle", None) and _LIB is not None:
            _LIB.ert_free(self._handle)
            self._handle = None

    def __call__(self, image: np.ndarray, boxes: list[Detection]) -> list[np.ndarray]:
        """The (points, 2) float32 landmarks of each box in ``image`` (H x W grey or
        H x W x 3 RGB uint8), the boxes rounded as :func:`dlib_backend.to_rect` rounds them."""
        if not boxes:
            return []
        pixels = image if image.dtype == np.uint8 else image.astype(np.uint8)
        if pixels.ndim == 2:
            channels = 1
        elif pixels.ndim == 3 and pixels.shape[2] == 3:
            channels = 3
        else:
            raise ValueError(f"expected a grey or RGB image, got shape {pixels.shape}")
        if pixels.strides[-1] != 1 or (channels == 3 and pixels.strides[1] != 3):
            pixels = np.ascontiguousarray(pixels)
        rects = np.array([[round(b.left), round(b.top), round(b.right), round(b.bottom)]
                          for b in boxes], dtype=np.int32)
        out = np.empty((len(boxes), self.points, 2), np.float32)
        status = _LIB.ert_predict(self._handle, pixels.ctypes.data, pixels.shape[0], pixels.shape[1],
                                  channels, pixels.strides[0], rects.ctypes.data, len(boxes),
                                  out.ctypes.data)
        if status != 0:
            raise MemoryError("shape predictor: out of memory")
        return list(out)


def predictor(path: Path) -> ShapePredictor:
    """The parsed predictor of ``path``, once per process."""
    key = str(path)
    with _lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = ShapePredictor(Path(path).read_bytes())
        return model
