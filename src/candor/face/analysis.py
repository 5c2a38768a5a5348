"""Facts derived from landmarks and pixels: Rekognition's named landmarks, pose, quality,
eyes and mouth open, detection confidence.

Everything here is geometry on dlib's 68 points (iBUG 300-W order) and simple image
statistics, so every number can be explained. No gender, age or emotion: see DESIGN.md.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from candor.face.results import BoolAttribute, BoundingBox, ImageQuality, Landmark, Pose
from candor.models.base import Detection

# Rekognition's 30 landmark types from the 68 points. "Left"/"right" are as seen in the image
# (eyeLeft is the eye on the image's left), as Rekognition reports them. A tuple is averaged.
LANDMARKS_68: dict[str, tuple[int, ...]] = {
    "eyeLeft": (36, 37, 38, 39, 40, 41),
    "eyeRight": (42, 43, 44, 45, 46, 47),
    "nose": (30,),
    "mouthLeft": (48,),
    "mouthRight": (54,),
    "leftEyeBrowLeft": (17,),
    "leftEyeBrowRight": (21,),
    "leftEyeBrowUp": (19,),
    "rightEyeBrowLeft": (22,),
    "rightEyeBrowRight": (26,),
    "rightEyeBrowUp": (24,),
    "leftEyeLeft": (36,),
    "leftEyeRight": (39,),
    "leftEyeUp": (37, 38),
    "leftEyeDown": (40, 41),
    "rightEyeLeft": (42,),
    "rightEyeRight": (45,),
    "rightEyeUp": (43, 44),
    "rightEyeDown": (46, 47),
    "noseLeft": (31,),
    "noseRight": (35,),
    "mouthUp": (51,),
    "mouthDown": (57,),
    "leftPupil": (37, 38, 40, 41),
    "rightPupil": (43, 44, 46, 47),
    "upperJawlineLeft": (0,),
    "midJawlineLeft": (4,),
    "chinBottom": (8,),
    "midJawlineRight": (12,),
    "upperJawlineRight": (16,),
}

#: the five landmarks CompareFaces reports for each ComparedFace, as Rekognition does
COMPARED_FACE_LANDMARKS = ("eyeLeft", "eyeRight", "mouthLeft", "mouthRight", "nose")

# A generic head in millimetres, camera-aligned (x right, y down, z away from the camera),
# so that a frontal face has zero rotation. Points: nose tip, chin, outer eye corners,
# mouth corners (68-point indices 30, 8, 36, 45, 48, 54).
_MODEL_POINTS = np.array([
    (0.0, 0.0, 0.0),
    (0.0, 330.0, 65.0),
    (-225.0, -170.0, 135.0),
    (225.0, -170.0, 135.0),
    (-150.0, 150.0, 125.0),
    (150.0, 150.0, 125.0),
])
_POSE_POINTS = [30, 8, 36, 45, 48, 54]

#: eye aspect ratio (Soukupova & Cech 2016) above which an eye counts as open
EYE_OPEN_RATIO = 0.2
#: inner-lip gap over inner-mouth width above which the mouth counts as open
MOUTH_OPEN_RATIO = 0.15


def detection_confidence(score: float) -> float:
    """Confidence 0-100 from a detector's raw score (0 is the detector's own threshold, where
    this gives 88; each extra unit of margin takes it closer to 100)."""
    return float(100.0 / (1.0 + math.exp(-(4.0 * score + 2.0))))


# Box from the 5 landmarks, fitted by least squares to HOG boxes of 250 LFW and all sample
# faces: side = 1.853 x eye distance + 0.677 x eyes-to-nose distance (median error 8%, the
# size of HOG's own pyramid steps); centre 0.65 of the way from the eyes' midpoint to the nose.
BOX_EYE_DISTANCE = 1.853
BOX_EYES_TO_NOSE = 0.677
BOX_CENTRE = 0.65


def box_from_landmarks(points5: np.ndarray, detection: Detection) -> Detection:
    """A square face box placed from the 5 landmarks rather than the detector's window.

    Detector boxes come in pyramid steps of 20%, so the same face at two resolutions can get
    boxes that differ by a step; landmarks are continuous, so boxes placed from them agree
    across resolutions and across detectors (HOG and CNN boxes have different conventions).
    """
    eye_a = (points5[0] + points5[1]) / 2.0
    eye_b = (points5[2] + points5[3]) / 2.0
    eyes = (eye_a + eye_b) / 2.0
    nose = points5[4]
    side = (BOX_EYE_DISTANCE * float(np.linalg.norm(eye_a - eye_b))
            + BOX_EYES_TO_NOSE * float(np.linalg.norm(nose - eyes)))
    cx, cy = eyes + BOX_CENTRE * (nose - eyes)
    half = side / 2.0
    return Detection(float(cx - half), float(cy - half), float(cx + half), float(cy + half),
                     detection.score, detection.detector)


def bounding_box(box: Detection, width: int, height: int) -> BoundingBox:
    return BoundingBox(width=box.width / width, height=box.height / height,
                       left=box.left / width, top=box.top / height)


def _by_size(names: tuple[str, ...]) -> list[tuple[list[int], list[str], np.ndarray]]:
    """``names`` grouped by how many of the 68 points each averages: (positions in ``names``,
    names, point indices (n, k)), so that one numpy mean per group replaces one per name."""
    groups: dict[int, list[tuple[int, str]]] = {}
    for i, name in enumerate(names):
        groups.setdefault(len(LANDMARKS_68[name]), []).append((i, name))
    return [([i for i, _ in items], [n for _, n in items],
             np.array([LANDMARKS_68[n] for _, n in items], dtype=np.intp))
            for items in groups.values()]


_ALL_NAMES = tuple(LANDMARKS_68)
_ALL_GROUPS = _by_size(_ALL_NAMES)


def named_landmarks(points68: np.ndarray, width: int, height: int,
                    types: tuple[str, ...] | None = None) -> list[Landmark]:
    """Rekognition's named landmarks (as ratios of the image) from the 68 points.

    A landmark of several points is their mean; the names are averaged a group at a time
    (same float32 sums in the same order as one mean per name, so the same numbers), which
    spares ~30 small numpy calls per face on the request thread, under the GIL."""
    names = tuple(types) if types else _ALL_NAMES
    groups = _ALL_GROUPS if names == _ALL_NAMES else _by_size(names)
    xy: list[tuple[float, float]] = [(0.0, 0.0)] * len(names)
    for positions, _, indices in groups:
        for i, pair in zip(positions, points68[indices].mean(axis=1).tolist()):
            xy[i] = pair
    return [Landmark(type=name, x=x / width, y=y / height) for name, (x, y) in zip(names, xy)]


def pose(points68: np.ndarray, width: int, height: int) -> Pose:
    """Head pose from the 68 points by perspective-n-point against a generic head.

    Signs: Roll > 0 when the head tilts clockwise in the image, Yaw > 0 when the face turns
    toward the image's right, Pitch > 0 when the face tilts up.
    """
    image_points = points68[_POSE_POINTS].astype(np.float64)
    focal = float(max(width, height))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    ok, rvec, _ = cv2.solvePnP(_MODEL_POINTS, image_points, camera, np.zeros(4),
                               flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return Pose(roll=0.0, yaw=0.0, pitch=0.0)
    rotation, _ = cv2.Rodrigues(rvec)
    angles = cv2.RQDecomp3x3(rotation)[0]  # degrees about x, y, z
    pitch, yaw, roll = (_wrap(a) for a in angles)
    return Pose(roll=round(roll, 4), yaw=round(-yaw, 4), pitch=round(-pitch, 4))


def _wrap(angle: float) -> float:
    """Angle folded into (-90, 90]: a face seen from the front is never upside down in pitch/yaw."""
    a = (angle + 180.0) % 360.0 - 180.0
    if a > 90.0:
        a -= 180.0
    elif a <= -90.0:
        a += 180.0
    return a


def quality(image: np.ndarray, box: Detection) -> ImageQuality:
    """Brightness (mean luminance) and sharpness (variance of the Laplacian at a fixed face
    size, so it does not depend on resolution) of the face region, both 0-100.

    ``image``: grey, or RGB, of which only the face region is converted (luminance is
    per pixel, so the same values as converting the whole photo, for a fraction of the
    work on a large one)."""
    h, w = image.shape[:2]
    x0, y0 = max(int(box.left), 0), max(int(box.top), 0)
    x1, y1 = min(int(math.ceil(box.right)), w), min(int(math.ceil(box.bottom)), h)
    crop = image[y0:y1, x0:x1]
    if crop.size == 0:
        return ImageQuality(brightness=0.0, sharpness=0.0)
    if crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    brightness = float(crop.mean()) / 255.0 * 100.0
    face = cv2.resize(crop, (112, 112), interpolation=cv2.INTER_AREA)
    variance = float(cv2.Laplacian(face, cv2.CV_64F).var())
    sharpness = 100.0 * (1.0 - math.exp(-variance / 250.0))
    return ImageQuality(brightness=round(brightness, 4), sharpness=round(sharpness, 4))


def eye_aspect_ratio(points68: np.ndarray) -> float:
    """Mean eye aspect ratio of both eyes: eyelid gap over eye width."""
    ratios = []
    for start in (36, 42):
        p = points68[start:start + 6]
        gap = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
        width = np.linalg.norm(p[0] - p[3])
        ratios.append(gap / (2.0 * width) if width > 0 else 0.0)
    return float(np.mean(ratios))


def mouth_open_ratio(points68: np.ndarray) -> float:
    """Inner-lip gap (62-66) over inner-mouth width (60-64)."""
    width = np.linalg.norm(points68[60] - points68[64])
    gap = np.linalg.norm(points68[62] - points68[66])
    return float(gap / width) if width > 0 else 0.0


def eyes_open(points68: np.ndarray) -> BoolAttribute:
    return _threshold_attribute(eye_aspect_ratio(points68), EYE_OPEN_RATIO)


def mouth_open(points68: np.ndarray) -> BoolAttribute:
    return _threshold_attribute(mouth_open_ratio(points68), MOUTH_OPEN_RATIO)


def _threshold_attribute(ratio: float, threshold: float) -> BoolAttribute:
    """Value = ratio above threshold; confidence grows from 50 at the threshold to 100 at
    half the threshold's distance again (the geometry is clear-cut away from it)."""
    margin = min(abs(ratio - threshold) / (threshold / 2.0), 1.0)
    return BoolAttribute(value=ratio > threshold, confidence=round(50.0 + 50.0 * margin, 4))
