"""AWS JSON 1.1 as Rekognition speaks it, driven by botocore's own model of the service.

A request body is parsed as JSON (refused with SerializationException when it is not an object,
or nests deeper than :data:`MAX_DEPTH`, checked before parsing), then checked against the
operation's input shape and converted by the one validator every door uses
(:func:`candor.service.validation.validate` with ``wire=True``: blobs base64-decoded to bytes,
timestamps to datetimes). Responses are turned back into JSON the way AWS writes them: bytes as
base64, datetimes as epoch seconds.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import numpy as np
from botocore.model import OperationModel

from candor.errors import (  # noqa: F401  (re-exported: callers import them from here)
    CandorError,
    SerializationException,
    UnknownOperation,
)
from candor.service import operations
from candor.service.model import operation_model, rekognition_model
from candor.service.validation import validate

TARGET_PREFIX = "RekognitionService."
CONTENT_TYPE = "application/x-amz-json-1.1"
#: deepest nesting of objects and arrays a body may have (Rekognition's requests need 4)
MAX_DEPTH = 64

service_model = rekognition_model  # the name this module gave it first
__all__ = ["operation_model", "service_model"]

_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("{"), ord("[")]] = 1
_OPEN[[ord("}"), ord("]")]] = -1


def image_count(op: OperationModel) -> int:
    """How many images an operation's request can carry (sizes its body limit), from the
    operation table; an operation candor does not serve carries none."""
    descriptor = operations.spec(op.name)
    return len(descriptor.images) if descriptor is not None else 0


def nesting_depth(body: bytes) -> int:
    """How deep ``body``'s objects and arrays nest, without parsing (or recursing): brackets
    inside strings (after an odd number of unescaped quotes) are left out, then the rest
    counted. Linear in the body, with arrays the size of its brackets, quotes and backslashes:
    cheap on a 7 MB body of base64, and on one of ``\\"`` with no closing quote (a regular
    expression blanking out strings took minutes on 256 KB of it, holding the GIL)."""
    arr = np.frombuffer(body, np.uint8)
    steps = _OPEN[arr]
    brackets = np.flatnonzero(steps)
    if not brackets.size:
        return 0
    quotes = np.flatnonzero(arr == ord('"'))
    if quotes.size:
        quotes = quotes[~_escaped(arr, quotes)]
        brackets = brackets[np.searchsorted(quotes, brackets) % 2 == 0]
    return int(np.cumsum(steps[brackets], dtype=np.int64).max(initial=0))


def _escaped(arr: np.ndarray, quotes: np.ndarray) -> np.ndarray:
    """Whether each quote at ``quotes`` is escaped: an odd run of backslashes ends just before."""
    slashes = np.flatnonzero(arr == ord("\\"))
    if not slashes.size:
        return np.zeros(quotes.size, bool)
    breaks = np.flatnonzero(np.diff(slashes) != 1)  # runs of consecutive backslashes
    starts = slashes[np.r_[0, breaks + 1]]
    ends = slashes[np.r_[breaks, slashes.size - 1]]
    run = np.minimum(np.searchsorted(ends, quotes - 1), ends.size - 1)
    return (ends[run] == quotes - 1) & ((ends[run] - starts[run]) % 2 == 0)


def parse_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is ``{}``, as botocore sends none)."""
    if not body.strip():
        return {}
    if nesting_depth(body) > MAX_DEPTH:
        raise SerializationException(
            f"Request body nests objects and arrays more than {MAX_DEPTH} deep")
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SerializationException(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SerializationException("Request body must be a JSON object")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def decode_input(op: OperationModel, params: dict[str, Any]) -> dict[str, Any]:
    """Validate ``params`` against ``op``'s input shape and convert it for the service layer."""
    return validate(op, params, wire=True)


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
