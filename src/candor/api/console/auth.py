"""Console accounts, sessions and CSRF: who is signed in, and whether a form really came from
a page this server rendered for them.

- Passwords are argon2id hashes (argon2-cffi); an unknown name costs one verification too, so
  timing does not tell which accounts exist.
- A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie (Secure when the
  request came over TLS, directly or as ``X-Forwarded-Proto: https`` from a proxy); the
  database keeps its SHA-256 only. Signing in always makes a new token and ends the session
  the browser came with (no session fixation).
- Every state-changing form carries the session's CSRF token (the sign-in form: a token in a
  short-lived cookie, double-submitted); a missing or wrong one is refused with 403.
- :data:`MAX_FAILED` failed sign-ins in a row lock the account for :data:`LOCK_MINUTES`.
- Every sign-in is the candor operation ConsoleSignIn: decided by the policy and recorded;
  failed ones are recorded as failed, with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from fastapi.responses import Response

from candor.config import OPERATOR_ORG
from candor.governance.principal import Principal

COOKIE = "candor_session"
LOGIN_COOKIE = "candor_signin"
SESSION_HOURS = 8
MAX_FAILED = 5
LOCK_MINUTES = 15
#: a form body bigger than this is not one of the console's
MAX_FORM_BYTES = 256 * 1024
NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
ROLES = ("admin", "reviewer", "auditor")

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("candor: an account that does not exist")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def valid_name(name: str) -> bool:
    return isinstance(name, str) and bool(NAME.match(name))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def principal(operator: str) -> Principal:
    """The principal of a console account's acts: the operator's organisation."""
    return Principal(name=f"console:{operator}", org=OPERATOR_ORG, category="general",
                     kind="local")


@dataclass(frozen=True)
class Session:
    operator: str
    role: str
    csrf: str
    token_sha256: str

    @property
    def principal(self) -> Principal:
        return principal(self.operator)


def secure(request: Request) -> bool:
    """Did this request reach candor over TLS (itself or a proxy that says so)?"""
    return (request.url.scheme == "https"
            or request.headers.get("x-forwarded-proto", "").lower() == "https")


def set_cookie(response: Response, request: Request, name: str, value: str,
               max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/console", httponly=True,
                        samesite="strict", secure=secure(request))


def current(store: Any, request: Request, now) -> Session | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 128:
        return None
    row = store.session(digest(token), now)
    if row is None:
        return None
    return Session(row["operator"], row["role"], row["csrf"], row["token_sha256"])


def new_session(store: Any, operator: str, now) -> tuple[str, str]:
    """A new session for ``operator``: (cookie token, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    store.create_session(digest(token), operator, csrf, now,
                         now + timedelta(hours=SESSION_HOURS))
    return token, csrf


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


async def read_form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of a POST (last value of each field); None if it is not one."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=500)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[-1] for k, v in parsed.items()}


def record_sign_in_failure(gate: Any, name: str, reason: str, at) -> None:
    """A failed sign-in in the ledger (decision ``failed``), with why."""
    shown = name if valid_name(name) else "?"
    gate.ledger.append(ts=at, request_id=str(uuid.uuid4()), principal=f"console:{shown}",
                       org=OPERATOR_ORG, category="general", operation="ConsoleSignIn",
                       decision="failed", rule=None, details={"error": reason})


def sign_in(gate: Any, store: Any, name: str, password: str, now) -> tuple[str, str] | str:
    """Check a sign-in; (token, csrf) of the new session, or the message to show."""
    account = store.operator(name) if valid_name(name) else None
    if account and account["locked_until"] and account["locked_until"] > now:
        check_password(None, password)  # same cost as any attempt
        record_sign_in_failure(gate, name, "locked", now)
        return "This account is locked after repeated failed sign-ins; try again later."
    if not check_password(account["password_hash"] if account else None, password):
        if account:
            store.login_failed(name, MAX_FAILED, now + timedelta(minutes=LOCK_MINUTES))
        record_sign_in_failure(gate, name, "bad name or password", now)
        return "Wrong name or password."
    store.login_succeeded(name)
    return gate.run_candor(principal(name), "ConsoleSignIn",
                           {"Operator": name, "Role": account["role"]},
                           lambda: new_session(store, name, now))
