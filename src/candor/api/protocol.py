"""AWS JSON 1.1 as Rekognition speaks it, driven by botocore's own model of the service.

Requests are checked against the operation's input shape (types, required members, lengths,
ranges, enums, patterns) and converted to what the service layer takes: blobs base64-decoded to
bytes, timestamps to datetimes. Responses are turned back into JSON the way AWS writes them:
bytes as base64, datetimes as epoch seconds. Using the model that the SDKs are generated from
keeps the server and every client agreeing on the shapes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
from functools import cache, lru_cache
from typing import Any

from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel, Shape

from candor.errors import CandorError, ImageTooLarge, InvalidImageFormat, InvalidParameter

TARGET_PREFIX = "RekognitionService."
CONTENT_TYPE = "application/x-amz-json-1.1"


class SerializationException(CandorError):
    """The body is not JSON (AWS answers malformed JSON 1.1 bodies with this name)."""

    code = "SerializationException"


class UnknownOperation(CandorError):
    code = "UnknownOperationException"


@lru_cache(maxsize=1)
def service_model() -> ServiceModel:
    """botocore's model of Rekognition, the wire spec."""
    return ServiceModel(Loader().load_service_model("rekognition", "service-2"), "rekognition")


def operation_model(name: str) -> OperationModel | None:
    model = service_model()
    return model.operation_model(name) if name in model.operation_names else None


def image_count(op: OperationModel) -> int:
    """How many Image members an operation's request can carry (sizes its body limit)."""
    shape = op.input_shape
    if shape is None:
        return 0
    return sum(1 for m in shape.members.values() if m.name == "Image")


@cache
def _pattern(shape_name: str, pattern: str) -> re.Pattern | None:
    try:
        return re.compile(pattern)
    except re.error:  # Java-only syntax such as \p{L}: not checked here
        return None


def parse_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is ``{}``, as botocore sends none)."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SerializationException(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SerializationException("Request body must be a JSON object")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _fail(path: str, value: Any, constraint: str) -> InvalidParameter:
    shown = value if isinstance(value, (int, float, bool)) or value is None else (
        f"'{value}'" if isinstance(value, str) and len(value) <= 64 else type(value).__name__)
    return InvalidParameter(
        f"1 validation error detected: Value {shown} at '{path}' failed to satisfy "
        f"constraint: {constraint}")


def decode_input(op: OperationModel, params: dict[str, Any]) -> dict[str, Any]:
    """Validate ``params`` against ``op``'s input shape and convert it for the service layer."""
    if op.input_shape is None:
        return {}
    return _decode(op.input_shape, params, "")


def _decode(shape: Shape, value: Any, path: str) -> Any:
    kind = shape.type_name
    meta = shape.metadata
    where = path or "request"
    if kind == "structure":
        if not isinstance(value, dict):
            raise _fail(where, value, "Member must be an object")
        out = {}
        for name in shape.required_members:
            if value.get(name) is None:
                raise _fail(_join(path, name), None, "Member must not be null")
        for name, member_value in value.items():
            member = shape.members.get(name)
            if member is None or member_value is None:
                continue  # unknown members are ignored, as AWS does; null means absent
            out[name] = _decode(member, member_value, _join(path, name))
        return out
    if kind == "list":
        if not isinstance(value, list):
            raise _fail(where, value, "Member must be a list")
        _check_length(len(value), meta, where, value, "length")
        return [_decode(shape.member, item, f"{where}.{i + 1}") for i, item in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise _fail(where, value, "Member must be a map")
        _check_length(len(value), meta, where, value, "length")
        return {_decode(shape.key, k, f"{where}.key"): _decode(shape.value, v, f"{where}.{k}")
                for k, v in value.items()}
    if kind == "string":
        if not isinstance(value, str):
            raise _fail(where, value, "Member must be a string")
        enum = meta.get("enum")
        if enum and value not in enum:
            raise _fail(where, value, f"Member must satisfy enum value set: [{', '.join(enum)}]")
        _check_length(len(value), meta, where, value, "length")
        pattern = meta.get("pattern")
        compiled = _pattern(shape.name, pattern) if pattern else None
        if compiled is not None and not compiled.fullmatch(value):
            raise _fail(where, value, f"Member must satisfy regular expression pattern: {pattern}")
        return value
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, value, "Member must be an integer")
        _check_range(value, meta, where)
        return value
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise _fail(where, value, "Member must be a number")
        _check_range(value, meta, where)
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _fail(where, value, "Member must be a boolean")
        return value
    if kind == "blob":
        return _decode_blob(shape, value, where)
    if kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, value, "Member must be a timestamp in epoch seconds")
        try:
            return dt.datetime.fromtimestamp(value, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise _fail(where, value, "Member must be a valid timestamp") from None
    raise InvalidParameter(f"unsupported shape type {kind} at '{where}'")


def _decode_blob(shape: Shape, value: Any, where: str) -> bytes:
    is_image = shape.name == "ImageBlob"
    bad = InvalidImageFormat if is_image else InvalidParameter
    if not isinstance(value, str):
        raise bad(f"{where} must be a base64-encoded string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"{where} is not valid base64") from None
    limit = shape.metadata.get("max")
    if limit is not None and len(data) > limit:
        if is_image:
            raise ImageTooLarge(
                f"Image size is too large: {len(data)} bytes; the limit for image bytes is "
                f"{limit} bytes (5 MB)")
        raise _fail(where, "blob", f"Member must have length less than or equal to {limit}")
    if len(data) < shape.metadata.get("min", 0):
        if is_image:
            raise InvalidImageFormat("Request has invalid image format: the image is empty")
        raise _fail(where, "blob", f"Member must have length greater than or equal to "
                                   f"{shape.metadata['min']}")
    return data


def _join(path: str, name: str) -> str:
    name = name[:1].lower() + name[1:]
    return f"{path}.{name}" if path else name


def _check_length(n: int, meta: dict, where: str, value: Any, what: str) -> None:
    if "min" in meta and n < meta["min"]:
        raise _fail(where, value, f"Member must have {what} greater than or equal to {meta['min']}")
    if "max" in meta and n > meta["max"]:
        raise _fail(where, value, f"Member must have {what} less than or equal to {meta['max']}")


def _check_range(v: float, meta: dict, where: str) -> None:
    if "min" in meta and v < meta["min"]:
        raise _fail(where, v, f"Member must have value greater than or equal to {meta['min']}")
    if "max" in meta and v > meta["max"]:
        raise _fail(where, v, f"Member must have value less than or equal to {meta['max']}")


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc).timestamp()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def encode_output(response: dict[str, Any]) -> bytes:
    """A response dict as AWS JSON 1.1 bytes: bytes as base64, datetimes as epoch seconds."""
    return json.dumps(response, default=_json_default, allow_nan=False,
                      separators=(",", ":")).encode()


def encode_error(error: CandorError) -> bytes:
    return json.dumps({"__type": error.code, "Message": error.message}).encode()
