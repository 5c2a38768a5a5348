"""The one byte encoding of an audit record that is hashed: total, and stable across databases.

A record is hashed when it is written and again, from what the database gives back, when it is
verified, so the encoding must give the same bytes for every value the database may return for
what was written. SQLite stores ``-0.0`` in a REAL column as ``0.0``, PostgreSQL's ``jsonb`` has
no negative zero, and a JSON column may give ``99`` back for ``99.0``; so numbers are encoded by value, not by
Python type:

* ``-0.0`` and ``0.0`` are ``0``; a float with an integral value below 2**53 is that integer
  (``99.0`` and ``99`` are both ``99``); any other float is its shortest round-trip decimal
  (``repr``: ``1e-300``, ``0.30000000000000004``), exact in any IEEE-754 double column;
* integers are exact decimals, however large (never squeezed through a float);
* NaN and the infinities have no equal in JSON or in every database, so they are refused
  (:class:`UnrecordableValue`, a typed 400), never hashed one way and stored another;
* objects have their keys sorted (recursively), tuples are lists, strings are UTF-8 as they are
  (a string that is not valid Unicode, such as a lone surrogate, is refused).

Records written before this encoding (the plain ``json.dumps`` form) are still accepted by
:func:`hash_matches`, so existing ledgers keep verifying.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

from candor.errors import UnrecordableValue

EXACT = 2 ** 53  # integers up to here are exact in a double


def value(v: Any) -> Any:
    """``v`` with every number in its canonical form (see the module docstring)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, numbers.Integral):  # also numpy's integers
        return int(v)
    if isinstance(v, numbers.Real):
        v = float(v)
        if not math.isfinite(v):
            raise UnrecordableValue(f"{v!r} cannot be recorded in the audit ledger")
        if v == 0:
            return 0
        if v.is_integer() and abs(v) < EXACT:
            return int(v)
        return v
    if isinstance(v, Mapping):
        return {str(k): value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [value(x) for x in v]
    raise UnrecordableValue(f"a {type(v).__name__} cannot be recorded in the audit ledger")


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: canonical values, sorted keys, no whitespace, no nulls, no
    ``hash``."""
    body = {k: value(v) for k, v in record.items() if k != "hash" and v is not None}
    try:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise UnrecordableValue(f"audit record not serialisable: {exc}") from exc


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def _legacy(record: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != "hash" and v is not None}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def hash_matches(record: Mapping[str, Any]) -> bool:
    """Whether the record's stored ``hash`` is its hash, in the canonical encoding or in the
    encoding used before it (so ledgers written earlier still verify). A legacy record whose
    threshold was ``-0.0`` was hashed so but stored as ``0.0``; that one value is retried, as
    ``0.0`` in a REAL column can only have been ``±0.0``."""
    stored = record.get("hash")
    try:
        if record_hash(record) == stored:
            return True
    except UnrecordableValue:
        pass
    try:
        if hashlib.sha256(_legacy(record)).hexdigest() == stored:
            return True
        t = record.get("threshold")
        if isinstance(t, float) and t == 0:
            flipped = {**record, "threshold": -0.0}
            return hashlib.sha256(_legacy(flipped)).hexdigest() == stored
    except (TypeError, ValueError):
        return False
    return False
