"""The policy model: ordered YAML rules that decide, per call, whether a principal may run it.

The first rule whose ``match`` fits the request decides. ``deny`` refuses, ``allow`` permits,
``require`` permits only when the request meets the rule's requirements (minimum match
threshold, maximum results, authorisation reference, daily cap) and refuses otherwise with a
message naming the unmet requirement. When no rule matches, the file's ``default`` decides.
First-match keeps a policy readable top to bottom, like a firewall, which matters because
compliance officers, not programmers, write these files. See docs/policies.md.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from candor.clock import as_utc, utcnow
from candor.errors import PolicyError  # noqa: F401  (re-exported: candor.governance.policy.PolicyError)
from candor.governance.principal import KNOWN_CATEGORIES, Principal
from candor.service import operations

log = logging.getLogger(__name__)

ALLOW, DENY, REQUIRE = "allow", "deny", "require"
UNKNOWN_CATEGORY_RULE = "unknown-category"  # the rule id recorded when a category is unknown

@lru_cache(maxsize=1)
def known_operations() -> frozenset[str]:
    """Rekognition's operation names, read from botocore's model (the wire spec), and the
    operation table's (candor's own operations: keys, erasure, retention, policy)."""
    names: set[str] = set(operations.TABLE)
    try:
        from candor.service.model import rekognition_model

        names |= set(rekognition_model().operation_names)
    except Exception as exc:  # botocore is a dependency; this only guards odd installs
        log.warning("botocore's rekognition model not loaded (%s); validating operation "
                    "names against a short list", exc)
    return frozenset(names)


# --------------------------------------------------------------------------------------------
# The parsed policy


@dataclass(frozen=True)
class Match:
    """A rule's conditions: an absent field matches anything; lists mean any-of; globs allowed."""

    category: tuple[str, ...] | None = None
    org: tuple[str, ...] | None = None
    operation: tuple[str, ...] | None = None
    #: operation kinds (candor.service.operations.KINDS): ``[identify, verify]`` covers every
    #: operation that returns or uses a similarity, including ones added later
    kind: tuple[str, ...] | None = None
    collection: tuple[str, ...] | None = None
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive (``until: 2021-06-10`` means through that day)

    def fits(self, req: Request) -> bool:
        p = req.principal
        if not _any_glob(self.category, p.category):
            return False
        if not _any_glob(self.org, p.org):
            return False
        if not _any_glob(self.operation, req.operation):
            return False
        if self.kind is not None:
            descriptor = operations.spec(req.operation)
            if descriptor is None or descriptor.kind not in self.kind:
                return False
        if self.collection is not None:
            if req.collection is None or not _any_glob(self.collection, req.collection):
                return False
        if self.start is not None and req.at < self.start:
            return False
        if self.end is not None and req.at >= self.end:
            return False
        return True


def parse_when(text: str) -> date | datetime:
    """A date (``2020-06-10``) or date-time (``2020-06-10T12:00:00Z``; naive means UTC).
    ``Z`` is accepted on Python 3.10 too, whose fromisoformat does not know it."""
    text = text.strip()
    if "T" not in text and " " not in text:
        return date.fromisoformat(text)
    at = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    return as_utc(at)


def _any_glob(patterns: tuple[str, ...] | None, value: str) -> bool:
    return patterns is None or any(fnmatchcase(value, pat) for pat in patterns)


@dataclass(frozen=True)
class Requirements:
    """What a ``require`` rule asks of a request before it may run."""

    min_threshold: float | None = None
    max_results: int | None = None
    human_review: bool = False
    authorization_reference: bool = False
    max_per_day: int | None = None
    #: how long a held call waits for a reviewer before its review expires (human_review)
    review_expires_hours: float | None = None

    def as_constraints(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("min_threshold", "max_results", "max_per_day", "review_expires_hours"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.human_review:
            out["human_review"] = True
        if self.authorization_reference:
            out["authorization_reference"] = True
        return out


@dataclass(frozen=True)
class Rule:
    id: str
    effect: str
    match: Match
    require: Requirements | None = None
    message: str = ""
    description: str = ""
    line: int = 0


@dataclass(frozen=True)
class Request:
    """One call as the policy sees it: who, what, on which collection, when."""

    principal: Principal
    operation: str
    params: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)
    authorization_reference: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", as_utc(self.at))

    @property
    def collection(self) -> str | None:
        value = self.params.get("CollectionId")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Decision:
    """The outcome: ``effect`` is allow or deny; ``rule`` is the deciding rule id or ``default``."""

    effect: str
    rule: str
    message: str = ""
    constraints: dict[str, Any] = field(default_factory=dict)
    # Parameters the gate sets before running the call (e.g. MaxFaces capped by max_results).
    param_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.effect == ALLOW

    def denial_text(self) -> str:
        """What the caller reads in AccessDeniedException: the rule and its message."""
        where = "the policy default" if self.rule == "default" else f"policy rule '{self.rule}'"
        return f"Denied by {where}: {self.message}" if self.message else f"Denied by {where}"


@dataclass(frozen=True)
class Share:
    """An explicit rule that lets organisations use a collection another one owns (tenancy
    keeps collections apart otherwise): ``owner``'s collections named ``collection`` (globs
    allowed), for the organisations ``with_orgs``, for ``operations`` (default: every
    operation that changes nothing, i.e. searches, listings and descriptions)."""

    id: str
    owner: str
    collection: str
    with_orgs: tuple[str, ...]
    operations: tuple[str, ...] | None = None
    description: str = ""
    line: int = 0

    def covers(self, org: str, collection_id: str, operation: str) -> bool:
        if org not in self.with_orgs or not fnmatchcase(collection_id, self.collection):
            return False
        if self.operations is not None:
            return _any_glob(self.operations, operation)
        from candor.service.operations import spec

        descriptor = spec(operation)
        return descriptor is not None and not descriptor.mutates

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "owner": self.owner, "collection": self.collection,
                "with": list(self.with_orgs),
                "operations": list(self.operations) if self.operations else "non-mutating"}


# ``usage(rule_id, org, since)`` -> calls this org made under this rule since ``since``.
UsageCounter = Callable[[str, str, datetime], int]


@dataclass(frozen=True)
class Policy:
    name: str
    default: str
    rules: tuple[Rule, ...]
    audit: str = "biometric"  # or "all": which allowed calls the ledger records
    categories: tuple[str, ...] = KNOWN_CATEGORIES
    description: str = ""
    source: str = "<string>"
    sha256: str = ""
    shares: tuple[Share, ...] = ()

    def shared_with(self, org: str, collection_id: str | None, operation: str) -> dict[str, str]:
        """The owners whose collection ``collection_id`` organisation ``org`` may use for
        ``operation`` by an explicit share rule: owner organisation -> share id."""
        if not isinstance(collection_id, str):
            return {}
        out: dict[str, str] = {}
        for share in self.shares:
            if share.owner != org and share.covers(org, collection_id, operation):
                out.setdefault(share.owner, share.id)
        return out

    def decide(self, req: Request, usage: UsageCounter | None = None) -> Decision:
        """Decide ``req``: the first matching rule, else the default.

        A principal whose category the policy does not know is refused: rules are written
        against categories, so a key issued as ``police`` instead of ``law_enforcement`` would
        otherwise slip past every rule meant for it.
        """
        if req.principal.category not in self.categories:
            return Decision(DENY, UNKNOWN_CATEGORY_RULE,
                            f"use-case category {req.principal.category!r} is not known to "
                            f"policy {self.name!r}; declare it under 'categories:'")
        for rule in self.rules:
            if not rule.match.fits(req):
                continue
            if rule.effect == DENY:
                return Decision(DENY, rule.id, rule.message or "operation not permitted")
            if rule.effect == ALLOW:
                return Decision(ALLOW, rule.id, rule.message)
            return _check_requirements(rule, req, usage)
        if self.default == ALLOW:
            return Decision(ALLOW, "default")
        return Decision(DENY, "default", "no policy rule allows this operation")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _check_requirements(rule: Rule, req: Request, usage: UsageCounter | None) -> Decision:
    need = rule.require or Requirements()
    constraints = need.as_constraints()
    suffix = f" ({rule.message})" if rule.message else ""

    def refuse(text: str) -> Decision:
        return Decision(DENY, rule.id, text + suffix, constraints)

    overrides: dict[str, Any] = {}
    descriptor = operations.spec(req.operation)
    if need.min_threshold is not None and descriptor is not None and descriptor.threshold:
        pname = descriptor.threshold
        raw = descriptor.threshold_in(req.params)
        given = _number(raw)
        if given is None:
            return refuse(f"{pname} must be a number of at least {need.min_threshold:g}")
        if given < need.min_threshold:
            shown = f"{given:g}" + ("" if pname in req.params else " (the default)")
            return refuse(
                f"{pname} {shown} is below the policy floor of {need.min_threshold:g} "
                f"for category {req.principal.category}; set {pname} to "
                f"{need.min_threshold:g} or higher"
            )
    if need.max_results is not None and descriptor is not None and descriptor.results:
        pname = descriptor.results
        if pname not in req.params:
            overrides[pname] = need.max_results
        else:
            given = _number(req.params[pname])
            if given is None or given > need.max_results:
                return refuse(
                    f"{pname} {req.params[pname]!r} exceeds the policy maximum of "
                    f"{need.max_results} for category {req.principal.category}"
                )
    if need.authorization_reference:
        ref = req.authorization_reference
        if not (isinstance(ref, str) and ref.strip()):
            return refuse(
                f"{req.operation} requires an authorisation reference for category "
                f"{req.principal.category} (HTTP header X-Candor-Authorization-Reference, "
                "CLI --authorization-ref)"
            )
    if need.max_per_day is not None:
        if usage is None:
            return refuse("a daily cap applies but usage cannot be counted (no audit ledger)")
        day = req.at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        used = usage(rule.id, req.principal.org, day)
        if used >= need.max_per_day:
            return refuse(
                f"daily cap of {need.max_per_day} {req.operation} calls reached for "
                f"organisation {req.principal.org} ({used} today, UTC)"
            )
    return Decision(ALLOW, rule.id, rule.message, constraints, overrides)


def rules_summary(policy: Policy) -> Iterable[str]:
    """One line per rule, for ``candor policy show`` and logs."""
    for r in policy.rules:
        yield f"{r.id}: {r.effect} (line {r.line})"
    yield f"default: {policy.default}"
