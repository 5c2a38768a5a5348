"""Batching across requests (candor.face.batcher) and doing only the work a response returns.

The batcher must give each caller exactly the embedding the unbatched path gives (within float
rounding), form one batch from callers that arrive together, never hold a lone caller, and
hand errors to the callers whose batch failed. The engine's counters show which model work an
operation did: the 68-point model runs only for faces whose details are returned (or checked
against a quality bar), and only the faces an operation keeps are embedded.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from candor.face.batcher import EmbedBatcher
from candor.face.imaging import load_image


@pytest.fixture(scope="module")
def lfw_chips(engine, data_dir: Path) -> list[np.ndarray]:
    """Chips of a few LFW photos (one array per photo, 1-3 faces each), as Engine cuts them."""
    out = []
    for path in sorted((data_dir / "lfw").glob("*/*_0001.jpg"))[:40]:
        image, faces = engine.analyse(path, landmarks=False)
        if faces:
            out.append(engine.chips(image, faces))
        if len(out) == 8:
            break
    assert len(out) == 8
    return out


def test_batched_embeddings_equal_unbatched(lfw_chips, engine) -> None:
    """Eight callers announced together make one batch, and each gets its own rows: the
    vectors Engine.embed_chips gives its chips alone."""
    batcher = EmbedBatcher(engine.embed_chips, wait=3600.0)  # only the callers end the wait
    gate = threading.Barrier(len(lfw_chips))
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        with batcher.caller():
            gate.wait()  # everyone announced before anyone submits
            results[i] = batcher.embed(lfw_chips[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(lfw_chips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    batcher.close()
    assert batcher.announced == 0  # each caller counted once, whether it embedded or left
    assert batcher.batches == 1
    assert batcher.faces == sum(len(c) for c in lfw_chips)
    for i, chips in enumerate(lfw_chips):
        alone = engine.embed_chips(chips)
        assert results[i].shape == alone.shape
        np.testing.assert_allclose(results[i], alone, atol=1e-5)


def test_a_lone_caller_does_not_wait(lfw_chips, engine) -> None:
    """With nobody else announced, an hour's wait bound is never used: the call returns."""
    batcher = EmbedBatcher(engine.embed_chips, wait=3600.0)
    with batcher.caller():
        out = batcher.embed(lfw_chips[0])
    np.testing.assert_allclose(out, engine.embed_chips(lfw_chips[0]), atol=1e-5)
    batcher.close()


def test_a_caller_that_never_embeds_releases_the_wait(lfw_chips, engine) -> None:
    """A request announced that ends without embedding (no face found) lets the others go."""
    batcher = EmbedBatcher(engine.embed_chips, wait=3600.0)
    announced, done = threading.Event(), threading.Event()

    def idle() -> None:
        with batcher.caller():
            announced.set()
            done.wait(timeout=600)

    other = threading.Thread(target=idle)
    other.start()
    announced.wait(timeout=60)
    result: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: result.append(batcher.embed(lfw_chips[1])))
    worker.start()
    done.set()  # the idle caller leaves without chips: the embedder stops waiting for it
    worker.join(timeout=600)
    other.join(timeout=60)
    assert result and result[0].shape == (len(lfw_chips[1]), 128)
    assert batcher.announced == 0
    batcher.close()


def test_errors_reach_every_caller_of_the_batch_and_the_batcher_goes_on() -> None:
    calls = []

    def flaky(chips: np.ndarray) -> np.ndarray:
        calls.append(len(chips))
        if len(calls) == 1:
            raise ValueError("network failed")
        return np.ones((len(chips), 128), np.float32)

    batcher = EmbedBatcher(flaky, wait=0)
    chips = np.zeros((2, 150, 150, 3), np.uint8)
    with pytest.raises(ValueError, match="network failed"):
        batcher.embed(chips)
    assert batcher.embed(chips).shape == (2, 128)
    batcher.close()
    with pytest.raises(RuntimeError):
        batcher.embed(chips)


def test_max_faces_bounds_a_batch() -> None:
    sizes = []
    batcher = EmbedBatcher(lambda c: sizes.append(len(c)) or np.zeros((len(c), 128)),
                           wait=3600.0, max_faces=3)
    gate = threading.Barrier(4)

    def call() -> None:
        with batcher.caller():
            gate.wait()
            batcher.embed(np.zeros((2, 150, 150, 3), np.uint8))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    batcher.close()
    assert sum(sizes) == 8 and max(sizes) <= 3 + 1  # a caller's chips are never split


# ------------------------------------------------------------------ only the work asked for


@pytest.fixture()
def service(tmp_path: Path):
    from candor.service import Service

    svc = Service(data_dir=tmp_path / "data")
    svc.call("CreateCollection", {"CollectionId": "c"})
    return svc


def counted(service, operation: str, params: dict) -> tuple[dict, dict]:
    before = dict(service.engine.counts)
    resp = service.call(operation, params)
    after = service.engine.counts
    return resp, {k: after[k] - before.get(k, 0) for k in ("landmarks68", "embedded")}


def test_detect_faces_embeds_nothing(service, samples: Path) -> None:
    image = (samples / "groups" / "two_people.jpg").read_bytes()
    resp, work = counted(service, "DetectFaces", {"Image": {"Bytes": image}})
    n = len(resp["FaceDetails"])
    assert n == 2
    assert work == {"landmarks68": n, "embedded": 0}
    # only what Attributes asks: DEFAULT has no EyesOpen/MouthOpen, and no age, gender or emotion
    assert all("EyesOpen" not in d and "AgeRange" not in d for d in resp["FaceDetails"])


def test_search_by_image_runs_no_68_point_model_and_embeds_one_face(service,
                                                                    samples: Path) -> None:
    image = (samples / "groups" / "two_people.jpg").read_bytes()
    service.call("IndexFaces", {"CollectionId": "c", "Image": {"Bytes": image}})
    params = {"CollectionId": "c", "Image": {"Bytes": image}}
    resp, work = counted(service, "SearchFacesByImage", params)
    assert work == {"landmarks68": 0, "embedded": 1}
    detected = service.call("DetectFaces", {"Image": {"Bytes": image}})["FaceDetails"]
    largest = max(detected, key=lambda d: d["BoundingBox"]["Width"] * d["BoundingBox"]["Height"])
    assert resp["SearchedFaceBoundingBox"] == largest["BoundingBox"]  # same numbers, same shape
    assert resp["SearchedFaceConfidence"] == largest["Confidence"]
    assert resp["FaceMatches"] and resp["FaceMatches"][0]["Similarity"] > 99
    # a quality bar needs the largest face's pose and quality: the 68 points of that face only
    _, work = counted(service, "SearchFacesByImage", {**params, "QualityFilter": "HIGH"})
    assert work == {"landmarks68": 1, "embedded": 1}


def test_index_faces_embeds_only_the_faces_it_indexes(service, samples: Path) -> None:
    image = (samples / "groups" / "two_people.jpg").read_bytes()
    resp, work = counted(service, "IndexFaces", {"CollectionId": "c", "Image": {"Bytes": image},
                                                 "MaxFaces": 1})
    assert len(resp["FaceRecords"]) == 1 and len(resp["UnindexedFaces"]) == 1
    assert work == {"landmarks68": 2, "embedded": 1}  # both described, one embedded
    detected = service.call("DetectFaces", {"Image": {"Bytes": image}})["FaceDetails"]
    returned = [resp["FaceRecords"][0]["FaceDetail"], resp["UnindexedFaces"][0]["FaceDetail"]]
    assert returned == detected  # the details are DetectFaces' own, whole


def test_engine_embed_through_a_batcher_matches_direct(engine, data_dir: Path) -> None:
    """Engine.embed with a batcher attached fills the same vectors as without one."""
    path = data_dir / "samples" / "groups" / "two_people.jpg"
    image = load_image(path)
    _, direct = engine.analyse(image, embed=True, landmarks=False)
    from candor.face.engine import Engine

    batched_engine = Engine()
    batched_engine.batcher = EmbedBatcher(batched_engine.embed_chips, wait=0.005)
    try:
        _, batched = batched_engine.analyse(image, embed=True, landmarks=False)
    finally:
        batched_engine.batcher.close()
    for a, b in zip(direct, batched, strict=True):
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-5)
    assert batched_engine.batcher.batches == 1
