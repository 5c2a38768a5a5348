"""The one small interface every model backend implements.

A backend turns pixels into faces in four steps that the engine composes:
``detect`` (boxes), ``landmarks`` (5 or 68 points per box), ``chips`` (aligned 150x150 crops
from the 5 points, exactly as dlib cuts them) and ``embed`` (128-d descriptors, batched).
Backends differ in *how* they run the networks, never in *what* they compute: the ``dlib``
backend is the reference and every other backend is tested against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

EMBEDDING_SIZE = 128
CHIP_SIZE = 150
CHIP_PADDING = 0.25


@dataclass(frozen=True)
class Detection:
    """A face box in pixel coordinates of the image it was found in (floats, may cross edges)."""

    left: float
    top: float
    right: float
    bottom: float
    score: float  # the detector's raw score (HOG: SVM margin; CNN: MMOD confidence)
    detector: str  # "hog" or "cnn"

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def scaled(self, factor: float) -> Detection:
        return Detection(self.left * factor, self.top * factor, self.right * factor,
                         self.bottom * factor, self.score, self.detector)


class Backend(Protocol):
    """What the engine needs from a model backend."""

    name: str

    def detect(self, image: np.ndarray, detector: str = "hog", upsample: int = 1) -> list[Detection]:
        """Faces in an RGB uint8 image (H, W, 3), in that image's pixel coordinates."""
        ...

    def landmarks(self, image: np.ndarray, boxes: list[Detection], points: int) -> list[np.ndarray]:
        """For each box, a (points, 2) float array of (x, y) pixels; ``points`` is 5 or 68."""
        ...

    def chips(self, image: np.ndarray, landmarks5: list[np.ndarray]) -> np.ndarray:
        """Aligned face chips (N, 150, 150, 3) uint8, cut as dlib's ``get_face_chip`` (padding 0.25)."""
        ...

    def embed(self, chips: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Descriptors (N, 128) float32 for a batch of chips, as dlib's ResNet computes them;
        ``threads``: how many threads the call may use (a hint; the same numbers either way)."""
        ...
