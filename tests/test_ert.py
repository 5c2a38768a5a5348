"""candor's C shape predictor (candor/models/_ert.c) gives dlib's points, without the GIL."""

from __future__ import annotations

import os
import shutil
import sysconfig
import threading
from pathlib import Path

import dlib
import numpy as np
import pytest

from candor.errors import DlibFormatError
from candor.face.engine import Engine
from candor.face.imaging import load_image
from candor.models import ert
from candor.models.base import Detection
from candor.models.dlib_backend import SHAPE_MODELS, to_rect
from candor.models.files import model_path

DATA = Path(os.environ.get("CANDOR_TEST_DATA", "/nonexistent"))
built = pytest.mark.skipif(not ert.available(), reason="candor.models._ert was not built")


def test_the_extension_is_built_where_a_c_compiler_is():
    """pip builds it as an optional extension: a machine with a compiler must have it (else a
    failed build would pass unseen, and every landmark would hold the GIL again)."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) on this machine")
    assert ert.available()


def dlib_points(predictor, pixels: np.ndarray, box: Detection) -> np.ndarray:
    shape = predictor(pixels, to_rect(box))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


@pytest.fixture(scope="module")
def faces() -> list[tuple[np.ndarray, Detection]]:
    """Faces of LFW photos and of the group photos (small, large, near the border)."""
    groups = sorted((DATA / "samples" / "groups").glob("*"))
    photos = sorted((DATA / "lfw").rglob("*.jpg"))[::40][:60] + groups
    if not photos:
        pytest.skip("test data not found")
    engine = Engine()
    out = []
    for path in photos:
        image = load_image(path)
        out += [(image.pixels, d) for d in engine.find_faces(image)]
    return out


@built
@pytest.mark.parametrize("points", [5, 68])
def test_every_point_equals_dlibs(faces, points):
    reference = dlib.shape_predictor(str(model_path(SHAPE_MODELS[points])))
    ours = ert.predictor(model_path(SHAPE_MODELS[points]))
    assert len(faces) > 60
    for pixels, box in faces:
        got = ours(pixels, [box])[0]
        assert got.shape == (points, 2)
        np.testing.assert_array_equal(got, dlib_points(reference, pixels, box))


@built
def test_boxes_outside_the_image_and_grey_images_match_dlib():
    reference = dlib.shape_predictor(str(model_path(SHAPE_MODELS[68])))
    ours = ert.predictor(model_path(SHAPE_MODELS[68]))
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    grey = np.ascontiguousarray(rgb[:, :, 1])
    boxes = [Detection(-50, -40, 60, 70, 1.0, "hog"), Detection(100, 80, 260, 240, 1.0, "hog"),
             Detection(10, 10, 11, 11, 1.0, "hog")]
    for pixels in (rgb, grey, rgb[:, ::-1]):  # a strided view is copied, not misread
        got = ours(pixels, boxes)
        for box, points in zip(boxes, got):
            np.testing.assert_array_equal(points, dlib_points(reference, np.ascontiguousarray(pixels), box))


@built
def test_threads_share_one_predictor():
    """The model is read-only and each call has its own scratch memory: the points do not
    depend on what other threads are predicting at the same time."""
    ours = ert.predictor(model_path(SHAPE_MODELS[68]))
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (200, 200, 3), dtype=np.uint8) for _ in range(4)]
    box = [Detection(40, 40, 160, 160, 1.0, "hog")]
    alone = [ours(image, box)[0] for image in images]
    together: dict[int, list[np.ndarray]] = {}

    def work(i: int) -> None:
        together[i] = [ours(images[i], box)[0] for _ in range(30)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        for points in together[i]:
            np.testing.assert_array_equal(points, alone[i])


@built
@pytest.mark.parametrize("damage", ["truncated", "empty", "trailing", "version", "flipped"])
def test_a_damaged_model_file_is_a_typed_error(damage):
    data = model_path(SHAPE_MODELS[5]).read_bytes()
    broken = {"truncated": data[: len(data) // 2], "empty": b"", "trailing": data + b"\x01\x05",
              "version": b"\x01\x02" + data[2:],
              "flipped": data[:40] + bytes([data[40] | 0x0F]) + data[41:]}[damage]
    with pytest.raises(DlibFormatError):
        ert.ShapePredictor(broken)


@built
def test_the_engine_uses_it():
    engine = Engine()
    backend = getattr(engine.backend, "reference", engine.backend)
    assert isinstance(backend._predictor(68), ert.ShapePredictor)
