"""Who is calling: every door (HTTP key, CLI ``--as``, Python API) resolves to a Principal.

A principal is an organisation acting under one declared use-case category. Policies are
written against categories, so the category set is part of the contract: the six known
categories below, plus any the operator declares (in the policy file's ``categories:``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from candor.errors import InvalidParameter

KNOWN_CATEGORIES: tuple[str, ...] = (
    "general",
    "identity_verification",
    "media",
    "research",
    "child_safety",
    "law_enforcement",
)

# Lower-case identifiers only, so that a policy saying ``law_enforcement`` cannot be dodged by a
# key issued as ``Law-Enforcement``.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def valid_category_name(category: str) -> bool:
    """True when ``category`` is spelled as a category name (known or operator-defined)."""
    return isinstance(category, str) and bool(_NAME.match(category))


@dataclass(frozen=True)
class Principal:
    """The caller: ``name`` is the access key id (HTTP) or a local name (CLI, Python API)."""

    name: str
    org: str
    category: str
    kind: str = "local"  # "key" for an access key, "local" for the CLI / Python API

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise InvalidParameter("a principal needs a name (access key id or local name)")
        if not self.org or not isinstance(self.org, str):
            raise InvalidParameter("a principal needs an organisation")
        if not valid_category_name(self.category):
            raise InvalidParameter(
                f"invalid use-case category {self.category!r}: use a lower-case name such as "
                + ", ".join(KNOWN_CATEGORIES)
            )
        if self.kind not in ("key", "local"):
            raise InvalidParameter(f"invalid principal kind {self.kind!r}")

    @classmethod
    def local(cls, org: str, category: str = "general", name: str | None = None) -> Principal:
        """A principal for the CLI or Python API (``--as ORG``): audited like any key."""
        return cls(name=name or f"local:{org}", org=org, category=category, kind="local")

    @classmethod
    def from_access_key(cls, row) -> Principal:
        """From an ``access_keys`` row (or any object/mapping with its columns)."""
        get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
        return cls(name=get("access_key_id"), org=get("org"), category=get("category"), kind="key")

    @property
    def known_category(self) -> bool:
        return self.category in KNOWN_CATEGORIES
