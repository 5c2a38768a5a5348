"""The named landmarks, averaged a group at a time, are exactly the per-name means."""

from __future__ import annotations

import numpy as np
import pytest

from candor.face.analysis import COMPARED_FACE_LANDMARKS, LANDMARKS_68, named_landmarks


def per_name(points68: np.ndarray, width: int, height: int, types=None) -> list[tuple]:
    """The definition: each landmark the mean of its points, as a ratio of the image."""
    out = []
    for name in types or LANDMARKS_68:
        x, y = points68[list(LANDMARKS_68[name])].mean(axis=0)
        out.append((name, float(x) / width, float(y) / height))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("types", [None, COMPARED_FACE_LANDMARKS, ("nose", "leftPupil")])
def test_named_landmarks_are_the_per_name_means_bit_for_bit(dtype, types) -> None:
    rng = np.random.default_rng(17)
    for _ in range(300):
        points = (rng.random((68, 2)) * rng.choice([250, 1000, 4000])).astype(dtype)
        width, height = int(rng.integers(50, 5000)), int(rng.integers(50, 5000))
        got = [(lm.type, lm.x, lm.y) for lm in named_landmarks(points, width, height, types)]
        assert got == per_name(points, width, height, types)
