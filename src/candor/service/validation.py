"""The one request validator: every door checks a request against botocore's Rekognition model here.

:func:`validate` walks the operation's input shape (never the caller's data, so a hostile
request cannot make it recurse deeper than the model) and reports every broken constraint in
Rekognition's words: ``1 validation error detected: Value 0 at 'maxFaces' failed to satisfy
constraint: Member must have value greater than or equal to 1``, or ``N validation errors
detected: ...; ...``. The same walk converts what it checks:

- ``wire=True`` (the HTTP protocol): blobs are base64 text, decoded to bytes; timestamps are
  epoch seconds, turned into datetimes.
- ``wire=False`` (in-process callers: Python API, CLI, and :meth:`Service.call` for every
  door): blobs are bytes or an already decoded :class:`candor.face.imaging.Image`.

Either way numbers are checked against the model's range and Java's integer widths (Rekognition
is a Java service), non-finite floats are refused, and ``-0.0`` becomes ``0.0``; nulls mean
absent and unknown members are dropped, as AWS does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
from functools import cache
from typing import Any

from botocore.model import OperationModel, Shape

from candor.errors import ImageTooLarge, InvalidImageFormat, InvalidParameter
from candor.service.model import operation_model

#: Java's integer widths: Rekognition's ``integer`` and ``long`` members are bounded by them
INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
#: longest value quoted in a message (a hostile 100 KB string is shown cut)
SHOWN_CHARS = 64
#: most constraint messages listed (the count still says how many there were)
LISTED_ERRORS = 10


class _Errors(list):
    """Constraint messages gathered during one walk."""

    def add(self, value: Any, where: str, constraint: str) -> None:
        self.append(f"Value {_shown(value)} at '{where}' failed to satisfy constraint: "
                    f"{constraint}")


def validate(operation: str | OperationModel, params: Any, *, wire: bool = False) -> dict:
    """``params`` checked against ``operation``'s input shape and converted (see module doc).

    Raises InvalidParameter listing every broken constraint; an image blob that is not
    base64 or is over 5 MB raises InvalidImageFormat or ImageTooLarge, as Rekognition does.
    """
    op = operation_model(operation) if isinstance(operation, str) else operation
    if op is None:
        raise InvalidParameter(f"unknown operation {operation!r}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidParameter("1 validation error detected: the request must be an object "
                               f"of {op.name}'s members, not {type(params).__name__}")
    if op.input_shape is None:
        return {}
    errors = _Errors()
    out = _walk(op.input_shape, params, "", errors, wire)
    if errors:
        n = len(errors)
        listed = "; ".join(errors[:LISTED_ERRORS])
        more = f"; and {n - LISTED_ERRORS} more" if n > LISTED_ERRORS else ""
        raise InvalidParameter(f"{n} validation error{'s' if n > 1 else ''} detected: "
                               f"{listed}{more}")
    return out


def _walk(shape: Shape, value: Any, path: str, errors: _Errors, wire: bool) -> Any:
    """``value`` converted; a broken constraint is added to ``errors`` (and None returned)."""
    where = path or "request"
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            return errors.add(value, where, "Member must be a structure")
        out = {}
        for name in shape.required_members:
            if value.get(name) is None:
                errors.add(None, _join(path, name), "Member must not be null")
        for name, member in shape.members.items():
            if value.get(name) is not None:
                out[name] = _walk(member, value[name], _join(path, name), errors, wire)
        return out
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            return errors.add(value, where, "Member must be a list")
        if not _length(len(value), meta, value, where, errors):
            return None
        return [_walk(shape.member, item, f"{where}.{i + 1}.member", errors, wire)
                for i, item in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            return errors.add(value, where, "Member must be a map")
        if not _length(len(value), meta, value, where, errors):
            return None
        return {_walk(shape.key, k, f"{where}.key", errors, wire):
                _walk(shape.value, v, f"{where}.{k}", errors, wire) for k, v in value.items()}
    if kind == "string":
        return _string(shape, value, where, errors)
    if kind in ("integer", "long"):
        return _integer(kind, meta, value, where, errors)
    if kind in ("float", "double"):
        return _float(meta, value, where, errors)
    if kind == "boolean":
        if not isinstance(value, bool):
            return errors.add(value, where, "Member must be a boolean")
        return value
    if kind == "blob":
        return _blob(shape, value, where, errors, wire)
    if kind == "timestamp":
        return _timestamp(value, where, errors)
    errors.add(value, where, f"Member has a type candor does not take ({kind})")
    return None


def _string(shape: Shape, value: Any, where: str, errors: _Errors) -> str | None:
    meta = shape.metadata
    if not isinstance(value, str):
        return errors.add(value, where, "Member must be a string")
    enum = meta.get("enum")
    if enum and value not in enum:
        return errors.add(value, where, f"Member must satisfy enum value set: [{', '.join(enum)}]")
    if not _length(len(value), meta, value, where, errors):
        return None  # the pattern is not tried on a string already too long
    pattern = meta.get("pattern")
    compiled = _pattern(pattern) if pattern else None
    if compiled is not None and not compiled.fullmatch(value):
        return errors.add(value, where, f"Member must satisfy regular expression pattern: {pattern}")
    return value


def _integer(kind: str, meta: dict, value: Any, where: str, errors: _Errors) -> int | None:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)  # 5.0 is the integer 5, as Rekognition's JSON reader takes it
    if isinstance(value, bool) or not isinstance(value, int):
        return errors.add(value, where, f"Member must be of type {kind}")
    low, high = INT_RANGE[kind]
    low, high = max(low, meta.get("min", low)), min(high, meta.get("max", high))
    return value if _range(value, low, high, where, errors) else None


def _float(meta: dict, value: Any, where: str, errors: _Errors) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return errors.add(value, where, "Member must be a number")
    try:
        number = float(value)  # an integer of 400 digits overflows here
    except OverflowError:
        number = math.inf if value > 0 else -math.inf
    if not math.isfinite(number):
        return errors.add(value, where, "Member must be a finite number")
    number += 0.0  # -0.0 becomes 0.0: a sign on zero means nothing downstream
    low, high = meta.get("min", -math.inf), meta.get("max", math.inf)
    return number if _range(number, low, high, where, errors) else None


def _range(value: float, low: float, high: float, where: str, errors: _Errors) -> bool:
    if value < low:
        errors.add(value, where, f"Member must have value greater than or equal to {low}")
        return False
    if value > high:
        errors.add(value, where, f"Member must have value less than or equal to {high}")
        return False
    return True


def _blob(shape: Shape, value: Any, where: str, errors: _Errors, wire: bool) -> Any:
    """A blob: base64 text on the wire, bytes or a decoded Image in process."""
    is_image = shape.name == "ImageBlob"
    if not wire and _is_image(value):
        return value
    if wire or isinstance(value, str):
        if not isinstance(value, str):
            if is_image:
                raise InvalidImageFormat(f"Invalid image encoding: {where} must be a base64 string")
            return errors.add(value, where, "Member must be a base64-encoded string")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            if is_image:
                raise InvalidImageFormat(f"Invalid image encoding: {where} is not valid base64") \
                    from None
            return errors.add(value, where, "Member must be valid base64")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        return errors.add(value, where, "Member must be bytes" + (
            " or a candor.face.imaging.Image" if is_image else ""))
    limit, least = shape.metadata.get("max"), shape.metadata.get("min", 0)
    if limit is not None and len(data) > limit:
        if is_image:
            raise ImageTooLarge(f"Image size is too large: {len(data)} bytes; the limit for "
                                f"image bytes is {limit} bytes (5 MB)")
        return errors.add(data, where, f"Member must have length less than or equal to {limit}")
    if len(data) < least:
        return errors.add(data, where, f"Member must have length greater than or equal to {least}")
    return data


def _is_image(value: Any) -> bool:
    from candor.face.imaging import Image

    return isinstance(value, Image)


def _timestamp(value: Any, where: str, errors: _Errors) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return errors.add(value, where, "Member must be a timestamp in epoch seconds")
    try:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return errors.add(value, where, "Member must be a valid timestamp")


def _length(n: int, meta: dict, value: Any, where: str, errors: _Errors) -> bool:
    if "min" in meta and n < meta["min"]:
        errors.add(value, where, f"Member must have length greater than or equal to {meta['min']}")
        return False
    if "max" in meta and n > meta["max"]:
        errors.add(value, where, f"Member must have length less than or equal to {meta['max']}")
        return False
    return True


@cache
def _pattern(pattern: str) -> re.Pattern | None:
    try:
        return re.compile(pattern)
    except re.error:  # Java-only syntax such as \p{L}: not checked here
        return None


def _join(path: str, name: str) -> str:
    name = name[:1].lower() + name[1:]
    return f"{path}.{name}" if path else name


def _shown(value: Any) -> str:
    """A value as Rekognition quotes it in a message, cut short when long."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10**20:
        return f"'{str(value)[:20]}...' ({len(str(value))} digits)"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "..."
        return "'" + text.encode("unicode_escape").decode("ascii") + "'"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"'<{len(value)} bytes>'"
    if isinstance(value, (list, tuple)):
        return f"'[...]' ({len(value)} items)"
    if isinstance(value, dict):
        return "'{...}'"
    return f"'{type(value).__name__}'"
