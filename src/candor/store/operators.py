"""Console accounts and sessions: rows only (hashing, lockout policy and cookies are in
:mod:`candor.api.console.auth`).

:class:`OperatorsPart` is one part of :class:`candor.store.Store`. A session is stored as the
SHA-256 of its cookie token, so a copy of the database does not hold a usable session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from candor.store.database import as_utc
from candor.store.schema import console_sessions as T_sessions
from candor.store.schema import operators as T_ops

ROLES = ("admin", "reviewer", "auditor")


def _row(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row._mapping)
    for key in ("created_at", "locked_until", "expires_at"):
        if out.get(key) is not None:
            out[key] = as_utc(out[key])
    return out


class OperatorsPart:
    """Rows of ``operators`` and ``console_sessions``."""

    def put_operator(self, name: str, password_hash: str, role: str, at: datetime) -> bool:
        """Create the account, or replace its password and role; True when it was new."""
        with self.write() as conn:
            exists = conn.execute(select(T_ops.c.name).where(T_ops.c.name == name)).first()
            if exists:
                conn.execute(T_ops.update().where(T_ops.c.name == name).values(
                    password_hash=password_hash, role=role, failed_logins=0, locked_until=None))
                conn.execute(delete(T_sessions).where(T_sessions.c.operator == name))
            else:
                conn.execute(T_ops.insert().values(name=name, password_hash=password_hash,
                                                   role=role, created_at=at, failed_logins=0))
        return not exists

    def operator(self, name: str) -> dict[str, Any] | None:
        with self.read() as conn:
            return _row(conn.execute(select(T_ops).where(T_ops.c.name == name)).first())

    def operators(self) -> list[dict[str, Any]]:
        with self.read() as conn:
            return [_row(r) for r in conn.execute(select(T_ops).order_by(T_ops.c.name)).all()]

    def remove_operator(self, name: str) -> bool:
        with self.write() as conn:
            conn.execute(delete(T_sessions).where(T_sessions.c.operator == name))
            return bool(conn.execute(delete(T_ops).where(T_ops.c.name == name)).rowcount)

    def login_failed(self, name: str, limit: int, locked_until: datetime) -> int:
        """Count a failed sign-in; at ``limit`` failures in a row the account is locked until
        ``locked_until``. Returns the failures so far."""
        with self.write() as conn:
            n = (conn.execute(select(T_ops.c.failed_logins).where(T_ops.c.name == name))
                 .scalar() or 0) + 1
            values: dict[str, Any] = {"failed_logins": n}
            if n >= limit:
                values.update(failed_logins=0, locked_until=locked_until)
            conn.execute(T_ops.update().where(T_ops.c.name == name).values(**values))
        return n

    def login_succeeded(self, name: str) -> None:
        with self.write() as conn:
            conn.execute(T_ops.update().where(T_ops.c.name == name).values(
                failed_logins=0, locked_until=None))

    def unlock_operator(self, name: str) -> None:
        self.login_succeeded(name)

    def create_session(self, token_sha256: str, operator: str, csrf: str, at: datetime,
                       expires_at: datetime) -> None:
        with self.write() as conn:
            conn.execute(T_sessions.insert().values(
                token_sha256=token_sha256, operator=operator, csrf=csrf, created_at=at,
                expires_at=expires_at))

    def session(self, token_sha256: str, now: datetime) -> dict[str, Any] | None:
        """The live session with this token hash, joined with its account (None if expired)."""
        q = (select(T_sessions, T_ops.c.role).join(T_ops, T_ops.c.name == T_sessions.c.operator)
             .where(T_sessions.c.token_sha256 == token_sha256, T_sessions.c.expires_at > now))
        with self.read() as conn:
            return _row(conn.execute(q).first())

    def end_session(self, token_sha256: str) -> None:
        with self.write() as conn:
            conn.execute(delete(T_sessions).where(T_sessions.c.token_sha256 == token_sha256))
