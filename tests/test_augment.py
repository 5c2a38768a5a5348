"""The perturbed views of a gallery face (candor.face.augment): small, deterministic, each a
different embedding of the same person, and combined into one unit embedding."""

from __future__ import annotations

import numpy as np
import pytest

from candor.face.augment import VIEWS, combine, embed_views, perturb


def test_perturb_moves_the_landmarks_as_one():
    pts = np.array([[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]], np.float32)
    assert np.allclose(perturb(pts, 0, 0, 1.0, 0), pts)
    shifted = perturb(pts, 0.1, 0, 1.0, 0)
    assert np.allclose(shifted[:, 1], pts[:, 1]) and np.all(shifted[:, 0] > pts[:, 0])
    zoomed = perturb(pts, 0, 0, 1.1, 0)
    assert np.allclose(zoomed.mean(0), pts.mean(0), atol=1e-4)
    rotated = perturb(pts, 0, 0, 1.0, 10)
    assert np.allclose(np.linalg.norm(rotated - pts.mean(0), axis=1),
                       np.linalg.norm(pts - pts.mean(0), axis=1), atol=1e-4)


def test_views_are_close_to_the_plain_embedding_but_not_equal(engine, samples):
    photo = next(p for p in sorted((samples / "identities" / "biden").iterdir())
                 if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    image, faces = engine.analyse(str(photo), attributes=None, landmarks=False, embed=True)
    if not faces:
        pytest.skip("no face in the sample")
    face = faces[0]
    views = embed_views(engine, image.pixels, face.landmarks5, list(VIEWS))
    assert views.shape == (len(VIEWS), 128)
    cosines = views @ face.embedding
    assert np.all(cosines > 0.98) and np.all(cosines < 0.99999), cosines
    again = embed_views(engine, image.pixels, face.landmarks5, list(VIEWS))
    assert np.allclose(views, again, atol=1e-5)  # deterministic: the same photo, the same views
    merged = combine(face.embedding, views, 1.0)
    assert abs(np.linalg.norm(merged) - 1) < 1e-5 and not np.allclose(merged, face.embedding)
    assert np.array_equal(combine(face.embedding, views, 0.0), face.embedding)
    assert embed_views(engine, image.pixels, face.landmarks5, []).shape == (0, 128)
