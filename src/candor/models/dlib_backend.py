"""The reference backend: dlib's own detectors, shape predictors and ResNet, as shipped in
``face_recognition_models``. Every other backend is measured against this one."""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from functools import cached_property

import dlib
import numpy as np

from candor.errors import InvalidParameter
from candor.models import ert
from candor.models.base import CHIP_PADDING, CHIP_SIZE, EMBEDDING_SIZE, Detection
from candor.models.files import model_path

SHAPE_MODELS = {5: "shape_predictor_5_face_landmarks.dat", 68: "shape_predictor_68_face_landmarks.dat"}


def to_rect(box: Detection) -> dlib.rectangle:
    return dlib.rectangle(int(round(box.left)), int(round(box.top)),
                          int(round(box.right)), int(round(box.bottom)))


def to_shape(points: np.ndarray) -> dlib.full_object_detection:
    """Rebuild dlib's shape object from (N, 2) points (the rect is not used by chip extraction)."""
    xs, ys = points[:, 0], points[:, 1]
    rect = dlib.rectangle(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points])


def frontal_face_detector() -> dlib.fhog_object_detector:
    """dlib's frontal face (HOG) detector. dlib builds it by parsing a text model, about 1 s of
    CPU at every start of every command; the same detector in dlib's binary form loads in
    milliseconds. So the first process saves it in the data dir (``models/``, beside the ONNX
    conversions) with its SHA-256, and later ones load that copy when the digest matches."""
    from candor.config import data_dir

    path = data_dir() / "models" / f"frontal_face_detector-dlib-{dlib.__version__}.svm"
    side = path.with_name(path.name + ".sha256")
    try:
        if hashlib.sha256(path.read_bytes()).hexdigest() == side.read_text().split()[0]:
            return dlib.fhog_object_detector(str(path))
    except (OSError, IndexError, RuntimeError):
        pass  # absent, partly written or unreadable: parse the text model and save it again
    detector = dlib.get_frontal_face_detector()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        detector.save(str(tmp))
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        os.replace(tmp, path)  # the model first, then its digest: a crash between -> re-saved
        side_tmp = side.with_name(f"{side.name}.{os.getpid()}.tmp")
        side_tmp.write_text(f"{digest}  {path.name}\n")
        os.replace(side_tmp, side)
    except (OSError, RuntimeError):
        pass  # a read-only data dir: parse it every time, as before
    return detector


class DlibBackend:
    """dlib on the CPU. Models load lazily, once; the networks are guarded by locks because
    dlib's DNN objects keep per-call state and are not safe to share between threads."""

    name = "dlib"

    def __init__(self) -> None:
        self._net_lock = threading.Lock()
        self._cnn_lock = threading.Lock()
        self._local = threading.local()

    @cached_property
    def _hog_pickle(self) -> bytes:
        return pickle.dumps(frontal_face_detector())

    @property
    def hog(self):
        """This thread's HOG detector. dlib's detector keeps per-call state (its scanner holds
        the image's feature pyramid) and releases the GIL while it runs, so threads sharing
        one detector get each other's boxes; each thread gets its own copy, unpickled from
        the first in under a millisecond."""
        detector = getattr(self._local, "hog", None)
        if detector is None:
            detector = self._local.hog = pickle.loads(self._hog_pickle)
        return detector

    @cached_property
    def cnn(self):
        return dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))

    @cached_property
    def yunet(self):
        from candor.models.yunet import YunetDetector

        return YunetDetector()

    @cached_property
    def shape_predictors(self) -> dict[int, dlib.shape_predictor]:
        return {n: dlib.shape_predictor(str(model_path(f))) for n, f in SHAPE_MODELS.items()}

    @cached_property
    def resnet(self):
        return dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat")))

    def warm(self, embed: bool = True) -> None:
        """Load the HOG detector, the shape predictors and (``embed``) the ResNet now, e.g. on
        a thread while a command starts up, instead of on the first image."""
        self._hog_pickle  # noqa: B018
        for points in SHAPE_MODELS:
            self._predictor(points)
        if embed:
            self.resnet  # noqa: B018

    def detect(self, image: np.ndarray, detector: str = "hog", upsample: int = 1) -> list[Detection]:
        if detector == "hog":
            rects, scores, _ = self.hog.run(image, upsample, 0.0)
            return [Detection(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s), "hog")
                    for r, s in zip(rects, scores)]
        if detector == "cnn":
            with self._cnn_lock:
                found = self.cnn(image, upsample)
            return [Detection(d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1,
                              float(d.confidence), "cnn") for d in found]
        if detector == "yunet":
            return self.yunet.detect(image, upsample)
        raise InvalidParameter(f"unknown detector {detector!r}; choose hog, cnn or yunet")

    def _predictor(self, points: int):
        """The ``points``-point shape predictor: candor's C evaluation of dlib's model
        (:mod:`candor.models.ert`: the same points, without holding the GIL) where it was built,
        else dlib's own."""
        if ert.available():
            return ert.predictor(model_path(SHAPE_MODELS[points]))
        return self.shape_predictors[points]

    def landmarks(self, image: np.ndarray, boxes: list[Detection], points: int) -> list[np.ndarray]:
        predictor = self._predictor(points)
        if isinstance(predictor, ert.ShapePredictor):
            return predictor(image, boxes)
        out = []
        for box in boxes:
            shape = predictor(image, to_rect(box))
            out.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32))
        return out

    def chips(self, image: np.ndarray, landmarks5: list[np.ndarray]) -> np.ndarray:
        if not landmarks5:
            return np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
        shapes = dlib.full_object_detections()
        for pts in landmarks5:
            shapes.append(to_shape(pts))
        chips = dlib.get_face_chips(image, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
        return np.stack([np.asarray(c, dtype=np.uint8) for c in chips])

    def embed(self, chips: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Descriptors of ``chips`` (``threads`` is accepted for the interface; dlib's ResNet
        runs as it is built)."""
        if len(chips) == 0:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        batch = [np.ascontiguousarray(c) for c in chips]
        with self._net_lock:
            vectors = self.resnet.compute_face_descriptor(batch)
        return np.array([np.asarray(v) for v in vectors], dtype=np.float32)
