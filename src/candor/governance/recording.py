"""What the gate records of a call, read from the operation table: the digests of its input
images, the threshold it runs with, how many faces it found and what it returned as matches.
(Pure functions of the request or response, kept apart from :mod:`candor.governance.gate`.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from typing import Any

from candor.service import operations


def image_digests(operation: str, params: dict[str, Any]) -> list[str] | None:
    """SHA-256 of each input image (never the image). An S3 image is named by a hash of its
    location, prefixed ``s3:``, because the gate does not fetch it."""
    out: list[str] = []
    for key in _image_members(operation):
        img = params.get(key)
        if not isinstance(img, dict):
            continue
        data = img.get("Bytes")
        if data is not None:
            digest = getattr(data, "sha256", None)  # candor.face.imaging.Image, already hashed
            if isinstance(digest, str):
                out.append(digest)
            elif isinstance(data, (bytes, bytearray, memoryview)):
                out.append(hashlib.sha256(data).hexdigest())
            elif isinstance(data, str):
                try:
                    raw = base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    raw = data.encode("utf-8")
                out.append(hashlib.sha256(raw).hexdigest())
        elif isinstance(img.get("S3Object"), dict):
            s3 = img["S3Object"]
            where = f"s3://{s3.get('Bucket')}/{s3.get('Name')}?{s3.get('Version') or ''}"
            out.append("s3:" + hashlib.sha256(where.encode("utf-8")).hexdigest())
    return out or None


def _image_members(operation: str) -> tuple[str, ...]:
    descriptor = operations.spec(operation)
    return descriptor.images if descriptor is not None else ()


def effective_threshold(operation: str, params: dict[str, Any]) -> float | None:
    """The match threshold the call runs with (its descriptor's default when none is given)."""
    descriptor = operations.spec(operation)
    if descriptor is None or descriptor.threshold is None:
        return None
    value = params.get(descriptor.threshold, descriptor.default_threshold)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:  # in-process callers reach here before validation: a 400-digit int, inf, -0.0
        number = float(value) + 0.0  # -0.0 becomes 0.0, which the ledger hashes stably
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def audit_fields(operation: str, resp: dict[str, Any]) -> dict[str, Any]:
    """What the ledger records of a response, by the operation's descriptor: the faces found
    in its input image(s) and what it returned as matches or scores."""
    descriptor = operations.spec(operation)
    if descriptor is None or not isinstance(resp, dict):
        return {"faces_found": None, "matches": None}
    return {"faces_found": descriptor.faces_found(resp) if descriptor.faces_found else None,
            "matches": descriptor.matches(resp) if descriptor.matches else None}


def is_biometric(operation: str) -> bool:
    """Always recorded: the descriptor says so, and an operation without one is treated as
    biometric (recording too much is the safe side)."""
    descriptor = operations.spec(operation)
    return descriptor is None or descriptor.biometric
