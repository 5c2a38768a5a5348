"""Access keys that candor issues: one per organisation and declared use-case category.

Keys live in the store's ``access_keys`` table, so every ``candor serve`` node on the same
database sees the same keys and a revocation takes effect on the next request. SigV4 needs the
secret itself on the server side (it is an HMAC key, not a password), so it is stored; it is
shown once, at creation, and never logged or listed.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import bindparam, func, select

from candor.clock import as_utc, utcnow
from candor.config import OPERATOR_ORG
from candor.errors import InvalidParameter, ResourceNotFound

ADMIN_ORG = OPERATOR_ORG  # the first key is the operator's own
ADMIN_CATEGORY = "general"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class AccessKey:
    """An issued key as listed: everything but the secret."""

    access_key_id: str
    org: str
    category: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _key(row) -> AccessKey:
    """An AccessKey from a row, its times in UTC (SQLite hands them back naive)."""
    key_id, org, category, created, revoked = row
    return AccessKey(key_id, org, category, as_utc(created),
                     None if revoked is None else as_utc(revoked))


@dataclass(frozen=True)
class ActiveKey:
    """A key found for an incoming request: its secret (for SigV4) and whom it stands for."""

    access_key_id: str
    secret: str
    org: str
    category: str

    def __repr__(self) -> str:  # never let a secret reach a log line through repr()
        return f"ActiveKey({self.access_key_id!r}, org={self.org!r}, category={self.category!r})"


def new_key_id() -> str:
    """20 characters like an AWS key id (``AKCA`` + 16 base32), recognisable as candor's."""
    return "AKCA" + "".join(secrets.choice(_ALPHABET) for _ in range(16))


def new_secret() -> str:
    """40 URL-safe characters (240 bits), the length of an AWS secret access key."""
    return secrets.token_urlsafe(30)


class KeyStore:
    """Create, list, revoke and look up access keys in the store's ``access_keys`` table."""

    def __init__(self, store) -> None:
        from candor.store import schema

        self.store = store
        self.table = schema.access_keys
        t = self.table
        # built once: every signed request looks its key up, and building the statement and
        # its cache key anew cost ~0.2 ms of Python per request, under the GIL
        self._lookup = (select(t.c.access_key_id, t.c.secret, t.c.org, t.c.category)
                        .where(t.c.access_key_id == bindparam("key_id"))
                        .where(t.c.revoked_at.is_(None)))

    @classmethod
    def open(cls, data_dir: str | Path | None = None, url: str | None = None) -> KeyStore:
        """The keys of the store in ``data_dir`` (the process-wide store for that directory
        and database URL)."""
        from candor.store import open_store

        return cls(open_store(data_dir, url))

    def create(self, org: str, category: str) -> tuple[AccessKey, str]:
        """Issue a key for ``org`` under ``category``; returns the key and its secret (once)."""
        if not isinstance(org, str) or not org.strip() or len(org) > 255:
            raise InvalidParameter("--org must be a non-empty name of at most 255 characters")
        if any(c in org for c in ":/") or not org.isprintable():
            # the organisation is part of collection ARNs (``...:<org>:collection/<id>``) and
            # of ``org/id`` collection labels: keep both unambiguous
            raise InvalidParameter("--org must not contain ':', '/' or control characters")
        if not isinstance(category, str) or not _NAME.match(category):
            raise InvalidParameter(
                f"invalid category {category!r}: use a lower-case name such as general, "
                "identity_verification, media, research, child_safety, law_enforcement")
        key = AccessKey(new_key_id(), org.strip(), category, utcnow())
        secret = new_secret()
        with self.store.write() as conn:
            conn.execute(self.table.insert().values(
                access_key_id=key.access_key_id, secret=secret, org=key.org,
                category=key.category, created_at=key.created_at, revoked_at=None))
        return key, secret

    def list(self, include_revoked: bool = True) -> list[AccessKey]:
        t = self.table
        query = select(t.c.access_key_id, t.c.org, t.c.category, t.c.created_at,
                       t.c.revoked_at).order_by(t.c.created_at)
        if not include_revoked:
            query = query.where(t.c.revoked_at.is_(None))
        with self.store.read() as conn:
            return [_key(row) for row in conn.execute(query)]

    def revoke(self, access_key_id: str) -> AccessKey:
        """Revoke a key now; requests signed with it fail from the next one on."""
        t = self.table
        with self.store.write() as conn:
            row = conn.execute(select(t.c.access_key_id, t.c.org, t.c.category, t.c.created_at,
                                      t.c.revoked_at)
                               .where(t.c.access_key_id == access_key_id)).first()
            if row is None:
                raise ResourceNotFound(f"no access key {access_key_id!r}")
            if row.revoked_at is None:
                conn.execute(t.update().where(t.c.access_key_id == access_key_id)
                             .values(revoked_at=utcnow()))
        return self.get(access_key_id)

    def get(self, access_key_id: str) -> AccessKey:
        t = self.table
        with self.store.read() as conn:
            row = conn.execute(select(t.c.access_key_id, t.c.org, t.c.category, t.c.created_at,
                                      t.c.revoked_at)
                               .where(t.c.access_key_id == access_key_id)).first()
        if row is None:
            raise ResourceNotFound(f"no access key {access_key_id!r}")
        return _key(row)

    def lookup(self, access_key_id: str) -> ActiveKey | None:
        """The active key with this id, or None when it is unknown or revoked."""
        if not isinstance(access_key_id, str) or len(access_key_id) > 128:
            return None
        with self.store.read() as conn:
            row = conn.execute(self._lookup, {"key_id": access_key_id}).first()
        return ActiveKey(*row) if row else None

    def count(self) -> int:
        with self.store.read() as conn:
            return conn.execute(select(func.count()).select_from(self.table)).scalar_one()

    def ensure_admin_key(self) -> tuple[AccessKey, str] | None:
        """On first start (no key ever issued) create one admin key; else None."""
        if self.count():
            return None
        return self.create(ADMIN_ORG, ADMIN_CATEGORY)
