"""Perturbed views of a face for gallery templates: the alignment shifted, scaled or rotated a
little, the chip blurred or its gamma changed.

A gallery photo is embedded once at import, offline, so it can afford several views; averaging
the embeddings of slightly different alignments cancels part of the noise one alignment brings
(dlib's ``num_jitters`` is the classic version). The perturbations are deterministic (the same
photo always gives the same template) and small: the size of the landmark model's own error.
Which views the celebrity gallery uses was chosen on a development split
(docs/celebrities.md, bench/celebrity_augment.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from candor.models.base import CHIP_SIZE

#: the views, by name: (dx, dy) shift as a fraction of the eye-to-mouth scale, scale factor,
#: rotation in degrees, then a chip filter ("blur", "gamma-0.8", ...) or None
VIEWS: dict[str, tuple[float, float, float, float, str | None]] = {
    "shift-left": (-0.03, 0.0, 1.0, 0.0, None),
    "shift-right": (0.03, 0.0, 1.0, 0.0, None),
    "shift-up": (0.0, -0.03, 1.0, 0.0, None),
    "shift-down": (0.0, 0.03, 1.0, 0.0, None),
    "zoom-in": (0.0, 0.0, 0.96, 0.0, None),
    "zoom-out": (0.0, 0.0, 1.04, 0.0, None),
    "rotate-left": (0.0, 0.0, 1.0, -4.0, None),
    "rotate-right": (0.0, 0.0, 1.0, 4.0, None),
    "blur": (0.0, 0.0, 1.0, 0.0, "blur"),
    "gamma-dark": (0.0, 0.0, 1.0, 0.0, "gamma-1.25"),
    "gamma-light": (0.0, 0.0, 1.0, 0.0, "gamma-0.8"),
}


def perturb(points: np.ndarray, dx: float, dy: float, scale: float, degrees: float) -> np.ndarray:
    """The 5 landmarks moved as one: shifted by (dx, dy) x their spread, scaled and rotated
    about their centre. Aligning a chip to moved landmarks moves the chip the other way."""
    pts = np.asarray(points, np.float64)
    centre = pts.mean(0)
    spread = float(np.sqrt(((pts - centre) ** 2).sum(1).mean())) or 1.0
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = (pts - centre) @ rot.T * scale + centre + np.array([dx, dy]) * spread
    return moved.astype(np.float32)


def _filter(chip: np.ndarray, how: str | None) -> np.ndarray:
    if how is None:
        return chip
    if how == "blur":
        return cv2.GaussianBlur(chip, (0, 0), 1.0)
    if how.startswith("gamma-"):
        g = float(how.split("-", 1)[1])
        table = np.clip(255.0 * (np.arange(256) / 255.0) ** g, 0, 255).astype(np.uint8)
        return cv2.LUT(chip, table)
    raise ValueError(how)


def view_chips(backend, pixels: np.ndarray, landmarks5: np.ndarray,
               views: Sequence[str]) -> np.ndarray:
    """The aligned chips (len(views), 150, 150, 3) of one face, one per named view."""
    if not views:
        return np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
    moved = [perturb(landmarks5, *VIEWS[v][:4]) for v in views]
    chips = backend.chips(pixels, moved)
    return np.stack([_filter(c, VIEWS[v][4]) for c, v in zip(chips, views)])


def combine(plain: np.ndarray, views: Sequence[np.ndarray], weight: float) -> np.ndarray:
    """A photo's gallery embedding: its own (unit) embedding plus ``weight`` x the mean of its
    views' unit embeddings, unit length again."""
    if not len(views) or weight == 0:
        return plain
    v = np.asarray(plain, np.float32) + weight * np.mean(np.asarray(views, np.float32), axis=0)
    return (v / np.linalg.norm(v)).astype(np.float32)


def embed_views(engine, pixels: np.ndarray, landmarks5: np.ndarray,
                    views: Sequence[str]) -> np.ndarray:
    """Unit embeddings (len(views), 128) of one face's views: one pass of the network each
    (the plain embedding already averages the face with its mirror)."""
    chips = view_chips(engine.backend, pixels, landmarks5, views)
    if not len(chips):
        return np.zeros((0, 128), np.float32)
    v = engine.backend.embed(chips)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
