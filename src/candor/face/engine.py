"""Image -> faces (box, landmarks, attributes, embedding); compare faces.

The engine composes a model backend (``candor.models``) with the geometry in
``candor.face.analysis`` and the score mapping in ``candor.scoring.similarity``. It knows nothing of
collections, HTTP or policy: those layers sit on top of it.
"""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from candor import config
from candor.errors import InvalidParameter
from candor.face import analysis
from candor.face.batcher import EmbedBatcher
from candor.face.imaging import Image, load_image
from candor.face.results import (
    BoundingBox,
    ComparedFace,
    ComparedSourceImageFace,
    CompareFacesMatch,
    CompareFacesResult,
    DetectFacesResult,
    FaceDetail,
)
from candor.models import Detection, get_backend
from candor.models.base import CHIP_SIZE, EMBEDDING_SIZE
from candor.scoring.similarity import Scoring, normalise

#: names the embedding candor stores, in Rekognition's numeric form; it changes whenever
#: embeddings stop being comparable (collections record it as their FaceModelVersion).
#: 1.1: dlib's ResNet v1, 5-point alignment, mirror-averaged, unit length
FACE_MODEL_VERSION = "1.1"
#: Rekognition returns at most this many faces per image
MAX_FACES = 100
#: images are shrunk so their longest side is at most this before detection (boxes are mapped
#: back); detection cost grows with pixels, and faces this resolution cannot find are too small
#: to recognise anyway
DETECT_MAX_SIDE = {"hog": 1280, "cnn": 800, "yunet": 960}
#: working images up to this long side may be upsampled once, so faces down to ~40 px are found
#: (both detectors look through an 80 px window; upsampling once halves that, at 4x the cost)
UPSAMPLE_MAX_SIDE = 1000
#: ... but not when the first pass, without upsampling, already found a face at least this
#: fraction of the image's shorter side: a portrait or face crop (LFW, ID photos, selfies), where
#: faces under 80 px would be background. See docs/engine.md, "Detection policy".
PORTRAIT_FACE_FRACTION = 1 / 3

#: "hog+cnn" runs the CNN only on images where HOG finds no face (profile, dark, small faces)
DETECTORS = ("hog", "cnn", "hog+cnn", "yunet")
#: the attributes candor computes; Rekognition's demographic and emotion attributes are
#: accepted and deliberately not answered (see docs/attributes.md)
SUPPORTED_ATTRIBUTES = {"DEFAULT", "ALL", "EYES_OPEN", "MOUTH_OPEN"}
UNANSWERED_ATTRIBUTES = {"AGE_RANGE", "BEARD", "EMOTIONS", "EYE_DIRECTION", "EYEGLASSES",
                         "GENDER", "MUSTACHE", "FACE_OCCLUDED", "SMILE", "SUNGLASSES"}

ImageSource = Image | bytes | str | os.PathLike


@dataclass
class Face:
    """One face found in an image, in that image's pixel coordinates."""

    box: Detection
    confidence: float
    landmarks5: np.ndarray
    landmarks68: np.ndarray | None
    detail: FaceDetail
    embedding: np.ndarray | None = None  # unit length, float32 (128,)
    #: the detector's box, which the 68-point model starts from (:meth:`Engine.describe`)
    detection: Detection | None = None


def parse_attributes(attributes: Iterable[str] | None) -> set[str]:
    """Which optional attributes to compute: a subset of {EYES_OPEN, MOUTH_OPEN}."""
    wanted = set(attributes or ["DEFAULT"])
    unknown = wanted - SUPPORTED_ATTRIBUTES - UNANSWERED_ATTRIBUTES
    if unknown:
        raise InvalidParameter(f"unknown attribute(s) {', '.join(sorted(unknown))}; valid: "
                               f"{', '.join(sorted(SUPPORTED_ATTRIBUTES | UNANSWERED_ATTRIBUTES))}")
    if "ALL" in wanted:
        return {"EYES_OPEN", "MOUTH_OPEN"}
    return wanted & {"EYES_OPEN", "MOUTH_OPEN"}


class Engine:
    """Face detection, analysis, embedding and comparison over one model backend."""

    def __init__(self, backend: str | None = None, detector: str | None = None,
                 scoring: Scoring | None = None) -> None:
        self.backend = get_backend(backend or config.DEFAULT_BACKEND)
        self.detector = detector or config.DEFAULT_DETECTOR
        self.scoring = scoring or Scoring()
        if self.detector not in DETECTORS:
            raise InvalidParameter(f"unknown detector {self.detector!r}; choose one of: "
                                   f"{', '.join(DETECTORS)}")
        #: embeds the chips of concurrent callers together (``candor serve`` sets one,
        #: see :mod:`candor.face.batcher`); None: each call embeds its own
        self.batcher: EmbedBatcher | None = None
        #: model work done, by kind: ``landmarks68`` and ``embedded`` count faces (tests read
        #: them to show that work a response does not return is not done)
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()

    # -- finding faces -------------------------------------------------------------------
    def find_faces(self, image: Image, max_faces: int = MAX_FACES) -> list[Detection]:
        """Detector boxes in ``image`` pixels, largest first, at most ``max_faces``."""
        if self.detector == "hog+cnn":
            return (self._detect(image, "hog", max_faces)
                    or self._detect(image, "cnn", max_faces))
        return self._detect(image, self.detector, max_faces)

    def _detect(self, image: Image, detector: str, max_faces: int) -> list[Detection]:
        pixels = image.pixels
        longest = max(pixels.shape[:2])
        scale = min(1.0, DETECT_MAX_SIDE[detector] / longest)
        work = pixels
        if scale < 1.0:
            size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
            work = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        found = self.backend.detect(work, detector, 0)
        if max(work.shape[:2]) <= UPSAMPLE_MAX_SIDE and not is_portrait(found, work.shape):
            found = self.backend.detect(work, detector, 1)  # finds the same faces and smaller
        boxes = [d.scaled(1.0 / scale) for d in found] if scale < 1.0 else found
        boxes.sort(key=lambda d: d.area, reverse=True)
        return boxes[:max_faces]

    def analyse(self, image: ImageSource, attributes: Iterable[str] | None = ("DEFAULT",),
                embed: bool = False, max_faces: int = MAX_FACES,
                landmarks: bool = True) -> tuple[Image, list[Face]]:
        """Find and describe every face (largest first); embeddings only when asked.

        ``landmarks=False`` skips the 68-point model, pose and named landmarks (unless
        ``attributes`` asks for EYES_OPEN or MOUTH_OPEN): the fast path for indexing, search
        and evaluation, which need only boxes and embeddings; :meth:`describe` adds them
        later to the faces that need them.
        """
        img = load_image(image)
        extras = parse_attributes(attributes)
        detections = self.find_faces(img, max_faces)
        if not detections:
            return img, []
        pts5 = self.backend.landmarks(img.pixels, detections, 5)
        faces = []
        for i, detection in enumerate(detections):
            box = analysis.box_from_landmarks(pts5[i], detection)
            confidence = analysis.detection_confidence(box.score)
            detail = FaceDetail(bounding_box=analysis.bounding_box(box, img.width, img.height),
                                confidence=round(confidence, 4))
            faces.append(Face(box=box, confidence=confidence, landmarks5=pts5[i],
                              landmarks68=None, detail=detail, detection=detection))
        if landmarks or extras:
            self.describe(img, faces, attributes, landmarks=landmarks)
        if embed:
            self.embed(img, faces)
        return img, faces

    def describe(self, image: Image, faces: Sequence[Face],
                 attributes: Iterable[str] | None = ("DEFAULT",), landmarks: bool = True) -> None:
        """Run the 68-point model on ``faces`` (those :meth:`analyse` found) and fill in what
        their details report: named landmarks, pose and quality (``landmarks``), EyesOpen and
        MouthOpen when ``attributes`` ask. Only for faces whose details a response returns:
        the embedding's alignment needs only the 5 points."""
        extras = parse_attributes(attributes)
        todo = [f for f in faces if f.landmarks68 is None and f.detection is not None]
        if not todo or not (landmarks or extras):
            return
        pixels = image.pixels
        pts68 = self.backend.landmarks(pixels, [f.detection for f in todo], 68)
        self._count("landmarks68", len(todo))
        for face, points in zip(todo, pts68):
            face.landmarks68 = points
            detail = face.detail
            if landmarks:
                detail.landmarks = analysis.named_landmarks(points, image.width, image.height)
                detail.pose = analysis.pose(points, image.width, image.height)
                detail.quality = analysis.quality(pixels, face.box)  # converts the face only
            if "EYES_OPEN" in extras:
                detail.eyes_open = analysis.eyes_open(points)
            if "MOUTH_OPEN" in extras:
                detail.mouth_open = analysis.mouth_open(points)

    def embed(self, image: Image, faces: Sequence[Face]) -> None:
        """Fill in each face's unit-length embedding (one batched call; through
        :attr:`batcher`, with other callers' faces, when there is one)."""
        if not faces:
            return
        chips = self.chips(image, faces)
        vectors = self.batcher.embed(chips) if self.batcher is not None else self.embed_chips(chips)
        self._count("embedded", len(faces))
        for face, vector in zip(faces, vectors):
            face.embedding = vector

    def _count(self, what: str, n: int) -> None:
        with self._counts_lock:
            self.counts[what] += n

    def chips(self, image: Image, faces: Sequence[Face]) -> np.ndarray:
        """The aligned 150x150 chips of ``faces`` (N, 150, 150, 3), as :meth:`embed` cuts them;
        :mod:`candor.face.pipeline` cuts them beside detection and embeds many images' at once."""
        if not faces:
            return np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
        return self.backend.chips(image.pixels, [f.landmarks5 for f in faces])

    def embed_chips(self, chips: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Unit embeddings of aligned chips: the ResNet's descriptors of each chip and of its
        mirror image, summed. A face and its mirror are the same person, and averaging the two
        views cancels part of the noise of one view: on LFW View 1 it lifts accuracy from
        98.5% to 98.7% for twice the network time (see docs/engine.md). ``threads``: the
        backend's threads for this call (the bulk pipeline asks for one; same numbers)."""
        if len(chips) == 0:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        both = np.concatenate([chips, np.ascontiguousarray(chips[:, :, ::-1])])
        vectors = (self.backend.embed(both) if threads is None
                   else self.backend.embed(both, threads=threads))
        return normalise(vectors[: len(chips)] + vectors[len(chips):])

    # -- operations ----------------------------------------------------------------------
    def detect_faces(self, image: ImageSource,
                     attributes: Iterable[str] | None = ("DEFAULT",)) -> DetectFacesResult:
        """Rekognition DetectFaces: every face (up to 100, largest first) with its details."""
        _, faces = self.analyse(image, attributes)
        return DetectFacesResult(face_details=[f.detail for f in faces])

    def compare_faces(self, source: ImageSource, target: ImageSource,
                      similarity_threshold: float = 80.0) -> CompareFacesResult:
        """Rekognition CompareFaces: the largest source face against every target face."""
        check_threshold(similarity_threshold, "SimilarityThreshold")
        src_img, src_faces = self.analyse(source, landmarks=False, max_faces=1, embed=True)
        if not src_faces:
            raise InvalidParameter("no face was found in the source image")
        tgt_img, tgt_faces = self.analyse(target, embed=True)
        src = src_faces[0]
        result = CompareFacesResult(source_image_face=ComparedSourceImageFace(
            bounding_box=src.detail.bounding_box, confidence=src.detail.confidence))
        if not tgt_faces:
            return result
        scores = self.scoring.similarity(src.embedding, np.stack([f.embedding for f in tgt_faces]))[0]
        for face, score in sorted(zip(tgt_faces, scores), key=lambda p: -p[1]):
            compared = compared_face(face)
            if score >= similarity_threshold:
                result.face_matches.append(
                    CompareFacesMatch(similarity=round(float(score), 4), face=compared))
            else:
                result.unmatched_faces.append(compared)
        return result


def is_portrait(found: Sequence[Detection], shape: tuple[int, ...]) -> bool:
    """Whether a face in ``found`` spans at least PORTRAIT_FACE_FRACTION of the shorter side of
    an image of ``shape``: then the image is about that face, and the 4x dearer search for faces
    under 80 px is skipped."""
    side = PORTRAIT_FACE_FRACTION * min(shape[:2])
    return any(max(d.width, d.height) >= side for d in found)


def compared_face(face: Face) -> ComparedFace:
    """The ComparedFace shape: box, confidence, the five landmarks, pose and quality."""
    d = face.detail
    landmarks = None
    if d.landmarks is not None:
        landmarks = [lm for lm in d.landmarks if lm.type in analysis.COMPARED_FACE_LANDMARKS]
    return ComparedFace(bounding_box=BoundingBox(**vars(d.bounding_box)), confidence=d.confidence,
                        landmarks=landmarks, pose=d.pose, quality=d.quality)


def check_threshold(value: float, name: str) -> None:
    """Thresholds are percentages: a number from 0 to 100."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or not 0 <= value <= 100:
        raise InvalidParameter(f"{name} must be a number from 0 to 100, got {value!r}")
