"""AWS Signature Version 4 verification, computed exactly as botocore's ``SigV4Auth`` signs.

The server recomputes the canonical request (method, path, query, signed headers, payload hash),
the string to sign (timestamp, credential scope) and the HMAC chain from the caller's secret, and
compares signatures in constant time. Requests older or newer than 15 minutes are refused so a
captured request cannot be replayed later. Errors carry the names and HTTP statuses AWS uses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

from candor.errors import (  # noqa: F401  (re-exported: callers import them from here)
    AuthError,
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "rekognition"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_SKEW = dt.timedelta(minutes=15)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Verified:
    """What a valid signature proves: who signed, for which region, and when."""

    access_key_id: str
    region: str
    signed_at: dt.datetime
    signed_headers: tuple[str, ...] = ()
    #: the request's signature (hex), for replay protection (:mod:`candor.api.replay`)
    signature: str = ""


_AUTH_RE = re.compile(r"^(\S+)\s+(.*)$", re.S)


def parse_authorization(value: str) -> tuple[str, list[str], list[str], str]:
    """Split ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``.

    Returns (access key id, scope parts [date, region, service, terminator], signed header
    names, signature hex).
    """
    m = _AUTH_RE.match(value.strip())
    if not m or m.group(1) != ALGORITHM:
        raise IncompleteSignature(
            f"Authorization header requires the {ALGORITHM} algorithm "
            "(only Signature Version 4 is supported)")
    fields: dict[str, str] = {}
    for part in m.group(2).split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key.strip()] = val.strip()
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise IncompleteSignature(
            "Authorization header requires " + ", ".join(f"'{k}' parameter" for k in missing)
            + ". Authorization=" + ALGORITHM)
    cred = fields["Credential"].split("/")
    if len(cred) != 5 or not cred[0]:
        raise IncompleteSignature(
            "Credential should be scoped to a valid region and service: "
            "<key id>/<date>/<region>/<service>/aws4_request")
    signed = fields["SignedHeaders"].split(";")
    return cred[0], cred[1:], signed, fields["Signature"]


def _trimall(value: str) -> str:
    return " ".join(value.split())


def canonical_path(raw_path: str) -> str:
    """The path as botocore canonicalises it: dot and empty segments removed, then quoted again.

    ``raw_path`` is the path as sent (still percent-encoded); quoting it once more is the
    double encoding every AWS service but S3 uses.
    """
    path = raw_path or "/"
    out: list[str] = []
    for seg in path.split("/"):
        if seg and seg != ".":
            if seg == "..":
                if out:
                    out.pop()
            else:
                out.append(seg)
    norm = ("/" if path.startswith("/") else "") + "/".join(out)
    if path.endswith("/") and out:
        norm += "/"
    return quote(norm, safe="/~")


def canonical_query(raw_query: str) -> str:
    """The query as botocore canonicalises a URL's query: pairs sorted, kept as sent."""
    if not raw_query:
        return ""
    pairs = []
    for pair in raw_query.split("&"):
        key, _, value = pair.partition("=")
        pairs.append((key, value))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """The HMAC chain: secret -> date -> region -> service -> ``aws4_request``."""
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for msg in (region, service, "aws4_request"):
        key = hmac.new(key, msg.encode(), hashlib.sha256).digest()
    return key


def verify(method: str, raw_path: str, raw_query: str,
           headers: Iterable[tuple[str, str]], body: bytes,
           secret_for: Callable[[str], str | None],
           now: dt.datetime | None = None, service: str = SERVICE) -> Verified:
    """Check a request's SigV4 signature; return who signed it or raise an :class:`AuthError`.

    ``headers`` are the raw (name, value) pairs as received (repeats allowed); ``secret_for``
    maps an access key id to its secret, or None for an unknown or revoked key.
    """
    hmap: dict[str, list[str]] = {}
    for name, value in headers:
        hmap.setdefault(name.lower(), []).append(value)
    auth = hmap.get("authorization")
    if not auth:
        raise MissingAuthenticationToken("Request is missing Authentication Token")
    key_id, scope, signed_headers, signature = parse_authorization(auth[0])
    date, region, scope_service, terminator = scope
    if terminator != "aws4_request":
        raise IncompleteSignature(
            f"Credential should be scoped with a valid terminator: 'aws4_request', not "
            f"'{terminator}'")
    if scope_service != service:
        raise InvalidSignature(
            f"Credential should be scoped to correct service: '{service}'.")
    if "host" not in signed_headers:
        raise InvalidSignature("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    stamp = hmap.get("x-amz-date", [None])[0]
    if stamp is None:
        raise IncompleteSignature(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
            "header (candor accepts X-Amz-Date).")
    try:
        signed_at = dt.datetime.strptime(stamp, TIMESTAMP_FORMAT).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise IncompleteSignature(
            f"X-Amz-Date must be in ISO-8601 basic format (YYYYMMDD'T'HHMMSS'Z'), got "
            f"'{stamp}'") from None
    if date != stamp[:8]:
        raise InvalidSignature(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{date}' != '{stamp[:8]}', from '{stamp}'.")

    secret = secret_for(key_id)
    if secret is None:
        raise UnrecognizedClient("The security token included in the request is invalid.")

    now = now or dt.datetime.now(dt.timezone.utc)
    if now - signed_at > MAX_SKEW:
        raise InvalidSignature(
            f"Signature expired: {stamp} is now earlier than "
            f"{(now - MAX_SKEW).strftime(TIMESTAMP_FORMAT)} "
            f"({now.strftime(TIMESTAMP_FORMAT)} - 15 min.)")
    if signed_at - now > MAX_SKEW:
        raise InvalidSignature(
            f"Signature not yet current: {stamp} is still later than "
            f"{(now + MAX_SKEW).strftime(TIMESTAMP_FORMAT)} "
            f"({now.strftime(TIMESTAMP_FORMAT)} + 15 min.)")

    body_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    declared = hmap.get("x-amz-content-sha256", [None])[0]
    if declared is not None and declared != body_hash:
        # UNSIGNED-PAYLOAD is refused too: the body is what decides what runs.
        raise InvalidSignature(
            "The provided 'x-amz-content-sha256' header does not match what was computed.")

    canon_headers = []
    for name in signed_headers:
        values = hmap.get(name)
        if values is None:
            raise InvalidSignature(
                f"The request signature we calculated does not match the signature you "
                f"provided: signed header '{name}' is absent from the request.")
        canon_headers.append(f"{name}:{','.join(_trimall(v) for v in values)}")
    canonical_request = "\n".join([
        method.upper(),
        canonical_path(raw_path),
        canonical_query(raw_query),
        "\n".join(canon_headers) + "\n",
        ";".join(signed_headers),
        declared if declared is not None else body_hash,
    ])
    string_to_sign = "\n".join([
        ALGORITHM, stamp, "/".join(scope),
        hashlib.sha256(canonical_request.encode()).hexdigest(),
    ])
    expected = hmac.new(signing_key(secret, date, region, scope_service),
                        string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise InvalidSignature(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.")
    return Verified(access_key_id=key_id, region=region, signed_at=signed_at,
                    signed_headers=tuple(signed_headers), signature=signature.lower())
