"""Typed results of the face operations, one dataclass per Rekognition shape.

Field names are PEP 8; ``to_dict()`` gives the Rekognition wire shape (PascalCase, ``None``
fields left out) and ``from_dict()`` reads it back, so the Python API, the CLI's ``--json``
and the HTTP service all speak the same shapes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T", bound="Shape")


@cache
def wire_name(name: str) -> str:
    """``bounding_box`` -> ``BoundingBox``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


@cache
def _wire_fields(cls: type) -> tuple[tuple[str, str], ...]:
    """(field, wire name) of a shape: computed once per class, not for every face (a
    FaceDetail with its landmarks has ~100 fields, and ``candor index`` converts hundreds)."""
    return tuple((f.name, wire_name(f.name)) for f in dataclasses.fields(cls))


class Shape:
    """Mixin: conversion between a dataclass and its Rekognition dict."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, wire in _wire_fields(type(self)):
            value = getattr(self, name)
            if value is not None:
                out[wire] = _to_wire(value)
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        hints = _hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            key = wire_name(f.name)
            if key in data:
                kwargs[f.name] = _from_wire(hints[f.name], data[key])
        return cls(**kwargs)


def _to_wire(value: Any) -> Any:
    if isinstance(value, Shape):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_to_wire(v) for v in value]
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_wire(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _from_wire(inner[0], value) if value is not None else None
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_from_wire(item, v) for v in value]
    if isinstance(hint, type) and issubclass(hint, Shape):
        return hint.from_dict(value)
    return value


@dataclass
class BoundingBox(Shape):
    """Box as ratios of the image's width and height (may extend past the edges)."""

    width: float
    height: float
    left: float
    top: float


@dataclass
class Landmark(Shape):
    type: str
    x: float
    y: float


@dataclass
class Pose(Shape):
    """Head pose in degrees: Roll (in-plane tilt), Yaw (left/right turn), Pitch (up/down)."""

    roll: float
    yaw: float
    pitch: float


@dataclass
class ImageQuality(Shape):
    brightness: float
    sharpness: float


@dataclass
class BoolAttribute(Shape):
    """EyesOpen / MouthOpen: a value and the confidence in it (0-100)."""

    value: bool
    confidence: float


@dataclass
class FaceDetail(Shape):
    bounding_box: BoundingBox
    confidence: float
    landmarks: list[Landmark] | None = None
    pose: Pose | None = None
    quality: ImageQuality | None = None
    eyes_open: BoolAttribute | None = None
    mouth_open: BoolAttribute | None = None


@dataclass
class ComparedFace(Shape):
    bounding_box: BoundingBox
    confidence: float
    landmarks: list[Landmark] | None = None
    pose: Pose | None = None
    quality: ImageQuality | None = None


@dataclass
class ComparedSourceImageFace(Shape):
    bounding_box: BoundingBox
    confidence: float


@dataclass
class CompareFacesMatch(Shape):
    similarity: float
    face: ComparedFace


@dataclass
class DetectFacesResult(Shape):
    face_details: list[FaceDetail] = field(default_factory=list)


@dataclass
class CompareFacesResult(Shape):
    source_image_face: ComparedSourceImageFace | None = None
    face_matches: list[CompareFacesMatch] = field(default_factory=list)
    unmatched_faces: list[ComparedFace] = field(default_factory=list)
