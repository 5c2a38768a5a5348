"""The face engine on real photos: detection, attributes, comparison (the issue's acceptance)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from candor.errors import InvalidParameter
from candor.face.analysis import LANDMARKS_68


def identity_photos(samples: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
            for d in sorted((samples / "identities").iterdir()) if d.is_dir()}


@pytest.fixture(scope="module")
def identity_faces(engine, samples):
    """Every identity photo analysed once: (person, path, faces with embeddings)."""
    out = []
    for person, paths in identity_photos(samples).items():
        for path in paths:
            _, faces = engine.analyse(path, embed=True, landmarks=False)
            out.append((person, path, faces))
    return out


def test_every_identity_photo_has_a_face(identity_faces):
    missing = [str(p) for _, p, faces in identity_faces if not faces]
    assert not missing, f"no face found in {missing}"
    assert len(identity_faces) >= 70


@pytest.mark.parametrize("name", ["couple.jpg", "two_people.jpg", "kit_with_rose.jpg"])
def test_group_photos_have_two_faces(engine, samples, name):
    result = engine.detect_faces(samples / "groups" / name)
    assert len(result.face_details) == 2


def test_same_face_same_box_at_four_resolutions(engine, samples):
    boxes = []
    for res in ("240p", "480p", "720p", "1080p"):
        details = engine.detect_faces(samples / "edge" / f"obama-{res}.jpg").face_details
        assert len(details) == 1, res
        b = details[0].bounding_box
        boxes.append([b.left, b.top, b.width, b.height])
    spread = np.ptp(np.array(boxes), axis=0)
    assert (spread <= 0.03).all(), spread


def test_face_detail_shape(engine, samples):
    detail = engine.detect_faces(samples / "groups" / "couple.jpg", ["ALL"]).face_details[0]
    d = detail.to_dict()
    assert set(d) == {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality", "EyesOpen",
                      "MouthOpen"}
    assert [lm["Type"] for lm in d["Landmarks"]] == list(LANDMARKS_68)
    assert len(d["Landmarks"]) == 30
    box = d["BoundingBox"]
    for lm in d["Landmarks"][:5]:  # eyes, nose, mouth lie inside the face box
        assert box["Left"] <= lm["X"] <= box["Left"] + box["Width"]
        assert box["Top"] <= lm["Y"] <= box["Top"] + box["Height"]
    eye_left = next(lm for lm in d["Landmarks"] if lm["Type"] == "eyeLeft")
    eye_right = next(lm for lm in d["Landmarks"] if lm["Type"] == "eyeRight")
    assert eye_left["X"] < eye_right["X"]  # as Rekognition: left as seen in the image
    assert 0 < d["Confidence"] <= 100
    assert 0 <= d["Quality"]["Brightness"] <= 100 and 0 <= d["Quality"]["Sharpness"] <= 100
    assert isinstance(d["EyesOpen"]["Value"], bool)
    # no demographic inference, ever
    assert not {"AgeRange", "Gender", "Emotions", "Smile"} & set(d)


def test_default_attributes_leave_out_eyes_and_mouth(engine, samples):
    d = engine.detect_faces(samples / "edge" / "obama_small.jpg").face_details[0].to_dict()
    assert "EyesOpen" not in d and "MouthOpen" not in d and "Pose" in d


def test_demographic_attributes_are_accepted_but_not_answered(engine, samples):
    d = engine.detect_faces(samples / "edge" / "obama_small.jpg",
                            ["GENDER", "AGE_RANGE", "EMOTIONS"]).face_details[0].to_dict()
    assert not {"AgeRange", "Gender", "Emotions"} & set(d)
    with pytest.raises(InvalidParameter, match="unknown attribute"):
        engine.detect_faces(samples / "edge" / "obama_small.jpg", ["FAVOURITE_COLOUR"])


def test_pose_follows_a_mirror(engine, samples):
    """Mirroring a photo flips the sign of roll and yaw and keeps pitch."""
    from candor.face.imaging import Image, load_image

    img = load_image(samples / "groups" / "couple.jpg")
    mirrored = Image(pixels=np.ascontiguousarray(img.pixels[:, ::-1]), format="PNG", sha256="m")
    a = engine.detect_faces(img).face_details
    b = engine.detect_faces(mirrored).face_details
    pa = max(a, key=lambda d: d.bounding_box.left).pose  # same person: right face, then left
    pb = min(b, key=lambda d: d.bounding_box.left).pose
    assert abs(pa.yaw) > 10
    assert np.sign(pa.yaw) == -np.sign(pb.yaw) and abs(abs(pa.yaw) - abs(pb.yaw)) < 8
    assert abs(pa.pitch - pb.pitch) < 8


def test_same_and_different_people_on_99_percent_of_pairs(identity_faces):
    """Every pair of identity photos: same person >= 80, different < 80."""
    from candor.scoring.similarity import similarity

    faces = [(person, faces[0].embedding) for person, _, faces in identity_faces if faces]
    right = total = 0
    for (pa, ea), (pb, eb) in itertools.combinations(faces, 2):
        score = float(similarity(ea, eb)[0, 0])
        right += (score >= 80) == (pa == pb)
        total += 1
    assert total > 2000
    assert right / total >= 0.99, f"{right}/{total}"


def test_compare_faces_semantics(engine, samples):
    result = engine.compare_faces(samples / "identities" / "obama" / "obama.jpg",
                                  samples / "groups" / "obama_and_biden.jpg")
    assert len(result.face_matches) == 1
    assert result.face_matches[0].similarity >= 80
    assert len(result.unmatched_faces) >= 2
    d = result.to_dict()
    assert set(d) == {"SourceImageFace", "FaceMatches", "UnmatchedFaces"}
    assert {lm["Type"] for lm in d["FaceMatches"][0]["Face"]["Landmarks"]} == {
        "eyeLeft", "eyeRight", "mouthLeft", "mouthRight", "nose"}
    strict = engine.compare_faces(samples / "identities" / "obama" / "obama.jpg",
                                  samples / "groups" / "obama_and_biden.jpg",
                                  similarity_threshold=100)
    assert not strict.face_matches and len(strict.unmatched_faces) == 3


def test_compare_needs_a_source_face(engine, samples, tmp_path):
    from PIL import Image as PILImage

    blank = tmp_path / "blank.png"
    PILImage.new("RGB", (200, 200), (120, 120, 120)).save(blank)
    with pytest.raises(InvalidParameter, match="no face"):
        engine.compare_faces(blank, samples / "groups" / "couple.jpg")
    result = engine.compare_faces(samples / "groups" / "couple.jpg", blank)
    assert result.face_matches == [] and result.unmatched_faces == []
    with pytest.raises(InvalidParameter, match="0 to 100"):
        engine.compare_faces(samples / "groups" / "couple.jpg", blank, similarity_threshold=101)


def test_named_landmarks_are_the_means_of_their_points():
    """The vectorised named landmarks equal, bit for bit, each landmark's points averaged one
    landmark at a time (``mean(axis=0)``, the definition), on float32 points of any size."""
    from candor.face.analysis import named_landmarks

    rng = np.random.default_rng(17)
    for scale, (w, h) in itertools.product((1.0, 250.0, 4000.0), ((250, 250), (1920, 1081))):
        points = (rng.random((68, 2)) * scale).astype(np.float32)
        expected = []
        for name, idx in LANDMARKS_68.items():
            x, y = points[list(idx)].mean(axis=0)
            expected.append((name, float(x) / w, float(y) / h))
        assert [(lm.type, lm.x, lm.y) for lm in named_landmarks(points, w, h)] == expected
        some = ("nose", "eyeLeft")
        assert [lm.type for lm in named_landmarks(points, w, h, some)] == list(some)
