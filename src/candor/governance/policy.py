"""The policy language: ordered YAML rules that decide, per call, whether a principal may run it.

The first rule whose ``match`` fits the request decides. ``deny`` refuses, ``allow`` permits,
``require`` permits only when the request meets the rule's requirements (minimum match
threshold, maximum results, authorisation reference, daily cap) and refuses otherwise with a
message naming the unmet requirement. When no rule matches, the file's ``default`` decides.
First-match keeps a policy readable top to bottom, like a firewall, which matters because
compliance officers, not programmers, write these files. See docs/policies.md.

Validation works on YAML nodes, not loaded values, so that every error names its line: a
policy that is silently misread (a typo in a category, a duplicate key) would be a moratorium
that does not hold.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from fnmatch import fnmatchcase
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from candor.errors import InvalidParameter
from candor.governance.principal import KNOWN_CATEGORIES, Principal, valid_category_name
from candor.scoring.similarity import IDENTIFICATION_THRESHOLD, VERIFICATION_THRESHOLD

log = logging.getLogger(__name__)

ALLOW, DENY, REQUIRE = "allow", "deny", "require"
UNKNOWN_CATEGORY_RULE = "unknown-category"  # the rule id recorded when a category is unknown

# Which request parameter carries the match threshold, and candor's default for it
# (candor.scoring.similarity: verification 80, identification 85).
THRESHOLD_PARAMS: dict[str, str] = {
    "CompareFaces": "SimilarityThreshold",
    "SearchFaces": "FaceMatchThreshold",
    "SearchFacesByImage": "FaceMatchThreshold",
    "StartFaceSearch": "FaceMatchThreshold",
    "SearchUsers": "UserMatchThreshold",
    "SearchUsersByImage": "UserMatchThreshold",
}


def default_threshold(operation: str) -> float:
    """The threshold an operation runs with when the request names none."""
    if operation == "CompareFaces":
        return VERIFICATION_THRESHOLD
    return IDENTIFICATION_THRESHOLD


# Which request parameter bounds the number of results (or of faces indexed).
RESULT_PARAMS: dict[str, str] = {
    "SearchFaces": "MaxFaces",
    "SearchFacesByImage": "MaxFaces",
    "IndexFaces": "MaxFaces",
    "SearchUsers": "MaxUsers",
    "SearchUsersByImage": "MaxUsers",
    "ListFaces": "MaxResults",
    "ListUsers": "MaxResults",
    "ListCollections": "MaxResults",
}

@lru_cache(maxsize=1)
def known_operations() -> frozenset[str]:
    """Rekognition's operation names, read from botocore's model (the wire spec)."""
    names: set[str] = set(THRESHOLD_PARAMS) | set(RESULT_PARAMS)
    names |= {"DetectFaces", "IndexFaces", "CreateCollection", "DeleteCollection", "DeleteFaces"}
    try:
        from candor.service.model import rekognition_model

        names |= set(rekognition_model().operation_names)
    except Exception as exc:  # botocore is a dependency; this only guards odd installs
        log.warning("botocore's rekognition model not loaded (%s); validating operation "
                    "names against a short list", exc)
    return frozenset(names)


class PolicyError(InvalidParameter):
    """A policy file that cannot be used; the message names file and line of each problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid policy:\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------------------------
# The parsed policy


@dataclass(frozen=True)
class Match:
    """A rule's conditions: an absent field matches anything; lists mean any-of; globs allowed."""

    category: tuple[str, ...] | None = None
    org: tuple[str, ...] | None = None
    operation: tuple[str, ...] | None = None
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
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


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

    def as_constraints(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("min_threshold", "max_results", "max_per_day"):
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
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    authorization_reference: str | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            object.__setattr__(self, "at", self.at.replace(tzinfo=timezone.utc))

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
    if need.min_threshold is not None and req.operation in THRESHOLD_PARAMS:
        pname = THRESHOLD_PARAMS[req.operation]
        raw = req.params.get(pname, default_threshold(req.operation))
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
    if need.max_results is not None and req.operation in RESULT_PARAMS:
        pname = RESULT_PARAMS[req.operation]
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
        day = req.at.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        used = usage(rule.id, req.principal.org, day)
        if used >= need.max_per_day:
            return refuse(
                f"daily cap of {need.max_per_day} {req.operation} calls reached for "
                f"organisation {req.principal.org} ({used} today, UTC)"
            )
    return Decision(ALLOW, rule.id, rule.message, constraints, overrides)


# --------------------------------------------------------------------------------------------
# Parsing and validation, on YAML nodes so that errors carry line numbers

_TOP_KEYS = {"version", "name", "description", "default", "audit", "categories", "rules"}
_RULE_KEYS = {"id", "description", "effect", "match", "require", "message"}
_MATCH_KEYS = {"category", "org", "operation", "collection", "from", "until"}
_REQUIRE_KEYS = {"min_threshold", "max_results", "human_review", "authorization_reference",
                 "max_per_day"}


class _Parser:
    def __init__(self, text: str, source: str):
        self.source = source
        self.problems: list[str] = []
        self.loader = yaml.SafeLoader(text)

    def err(self, node: yaml.Node | None, text: str) -> None:
        if node is None:
            self.problems.append(f"{self.source}: {text}")
        else:
            m = node.start_mark
            self.problems.append(f"{self.source}:{m.line + 1}:{m.column + 1}: {text}")

    def value(self, node: yaml.Node) -> Any:
        """The node's value; a tag SafeLoader refuses is a problem at that line (the file is
        then refused as a whole, so the None returned here is never acted on)."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.err(node, f"cannot read this value: {getattr(exc, 'problem', None) or exc}")
            return None

    def mapping(self, node: yaml.Node, what: str, allowed: set[str]) -> dict[str, yaml.Node]:
        """A mapping's entries by key, refusing unknown and duplicate keys (PyYAML allows both)."""
        if not isinstance(node, yaml.MappingNode):
            self.err(node, f"{what} must be a mapping")
            return {}
        out: dict[str, yaml.Node] = {}
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else None
            if key not in allowed:
                self.err(knode, f"unknown key {key!r} in {what}; expected one of "
                                + ", ".join(sorted(allowed)))
                continue
            if key in out:
                self.err(knode, f"duplicate key {key!r} in {what}")
                continue
            out[key] = vnode
        return out

    def string(self, node: yaml.Node, what: str) -> str | None:
        val = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(val, str) or not val.strip():
            self.err(node, f"{what} must be a non-empty string")
            return None
        return val

    def strings(self, node: yaml.Node, what: str) -> tuple[str, ...] | None:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if isinstance(node, yaml.SequenceNode) and not items:
            self.err(node, f"{what} must not be an empty list")
            return None
        out = []
        for item in items:
            s = self.string(item, what)
            if s is not None:
                out.append(s)
        return tuple(out) if len(out) == len(items) else None

    def when(self, node: yaml.Node, what: str, end: bool) -> datetime | None:
        val = self.value(node)
        if val is None:
            return None  # open-ended
        try:
            if isinstance(val, str):
                val = parse_when(val)
        except ValueError:
            self.err(node, f"{what} must be a date (2020-06-10) or date-time, not {val!r}")
            return None
        if isinstance(val, datetime):
            return val if val.tzinfo else val.replace(tzinfo=timezone.utc)
        if isinstance(val, date):
            start = datetime(val.year, val.month, val.day, tzinfo=timezone.utc)
            return start + timedelta(days=1) if end else start
        self.err(node, f"{what} must be a date (2020-06-10) or date-time")
        return None

    def number(self, node: yaml.Node, what: str, lo: float, hi: float,
               integer: bool = False) -> float | int | None:
        val = self.value(node)
        ok = isinstance(val, int if integer else (int, float)) and not isinstance(val, bool)
        if not ok or not lo <= val <= hi:
            kind = "an integer" if integer else "a number"
            self.err(node, f"{what} must be {kind} from {lo:g} to {hi:g}")
            return None
        return val

    def boolean(self, node: yaml.Node, what: str) -> bool:
        val = self.value(node)
        if not isinstance(val, bool):
            self.err(node, f"{what} must be true or false")
            return False
        return val

    # -- the document ------------------------------------------------------------------------

    def parse(self) -> Policy | None:
        try:
            root = self.loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{self.source}:{mark.line + 1}:{mark.column + 1}" if mark else self.source
            self.problems.append(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}")
            return None
        if root is None:
            self.err(None, "the policy file is empty")
            return None
        top = self.mapping(root, "the policy", _TOP_KEYS)
        if not top and not self.problems:
            self.err(root, "the policy is empty")
        if "version" in top and self.value(top["version"]) != 1:
            self.err(top["version"], "version must be 1")
        name = self.string(top["name"], "name") if "name" in top else Path(self.source).stem
        description = self.string(top["description"], "description") \
            if "description" in top else ""
        default = None
        if "default" not in top:
            self.err(root, "the policy must say 'default: allow' or 'default: deny'")
        else:
            default = self.value(top["default"])
            if default not in (ALLOW, DENY):
                self.err(top["default"], "default must be 'allow' or 'deny'")
        audit = "biometric"
        if "audit" in top:
            audit = self.value(top["audit"])
            if audit not in ("biometric", "all"):
                self.err(top["audit"], "audit must be 'biometric' or 'all'")
        categories = list(KNOWN_CATEGORIES)
        if "categories" in top:
            for cnode in (top["categories"].value if isinstance(top["categories"],
                                                                yaml.SequenceNode) else []):
                c = self.string(cnode, "a category")
                if c is not None and not valid_category_name(c):
                    self.err(cnode, f"category {c!r} must be a lower-case name (a-z, 0-9, _)")
                elif c is not None and c not in categories:
                    categories.append(c)
            if not isinstance(top["categories"], yaml.SequenceNode):
                self.err(top["categories"], "categories must be a list of names")
        rules: list[Rule] = []
        if "rules" in top:
            rnode = top["rules"]
            if not isinstance(rnode, yaml.SequenceNode):
                if self.value(rnode) is not None:
                    self.err(rnode, "rules must be a list")
            else:
                seen: dict[str, int] = {}
                for item in rnode.value:
                    rule = self.rule(item, categories)
                    if rule is None:
                        continue
                    if rule.id in seen:
                        self.err(item, f"duplicate rule id {rule.id!r} (first on line "
                                       f"{seen[rule.id]})")
                    seen.setdefault(rule.id, rule.line)
                    rules.append(rule)
        if self.problems:
            return None
        return Policy(name=name or "policy", default=default, rules=tuple(rules), audit=audit,
                      categories=tuple(categories), description=description or "",
                      source=self.source)

    def rule(self, node: yaml.Node, categories: list[str]) -> Rule | None:
        before = len(self.problems)
        entries = self.mapping(node, "a rule", _RULE_KEYS)
        line = node.start_mark.line + 1
        rid = self.string(entries["id"], "rule id") if "id" in entries else None
        if "id" not in entries:
            self.err(node, "every rule needs an 'id' (it names the rule in denials and the ledger)")
        effect = None
        if "effect" not in entries:
            self.err(node, "every rule needs an 'effect': deny, allow or require")
        else:
            effect = self.value(entries["effect"])
            if effect not in (ALLOW, DENY, REQUIRE):
                self.err(entries["effect"],
                         f"effect must be deny, allow or require, not {effect!r}")
        match = self.match(entries["match"], categories) if "match" in entries else Match()
        require = None
        if "require" in entries:
            if effect != REQUIRE:
                self.err(entries["require"], "'require' is only for rules with effect: require")
            else:
                require = self.requirements(entries["require"])
        elif effect == REQUIRE:
            self.err(node, "a rule with effect: require needs a 'require' mapping")
        message = self.string(entries["message"], "message") if "message" in entries else ""
        description = self.string(entries["description"], "description") \
            if "description" in entries else ""
        if len(self.problems) > before:
            return None
        return Rule(id=rid, effect=effect, match=match, require=require, message=message or "",
                    description=description or "", line=line)

    def match(self, node: yaml.Node, categories: list[str]) -> Match:
        if isinstance(node, yaml.ScalarNode) and self.value(node) is None:
            return Match()
        entries = self.mapping(node, "match", _MATCH_KEYS)
        fields: dict[str, Any] = {}
        for key in ("category", "org", "operation", "collection"):
            if key in entries:
                fields[key] = self.strings(entries[key], key)
        for cnode in _items(entries.get("category")) if fields.get("category") else ():
            cat = cnode.value
            if not _is_glob(cat) and cat not in categories:
                self.err(cnode, f"unknown category {cat!r}; known: {', '.join(categories)} "
                                "(declare new ones under 'categories:')")
        ops = known_operations()
        for onode in _items(entries.get("operation")) if fields.get("operation") else ():
            op = onode.value
            if not any(fnmatchcase(name, op) for name in ops):
                self.err(onode, f"operation {op!r} matches no Rekognition operation")
        start = self.when(entries["from"], "from", end=False) if "from" in entries else None
        end = self.when(entries["until"], "until", end=True) if "until" in entries else None
        if start and end and end <= start:
            self.err(entries["until"], "until is before from")
        return Match(start=start, end=end, **fields)

    def requirements(self, node: yaml.Node) -> Requirements | None:
        entries = self.mapping(node, "require", _REQUIRE_KEYS)
        if not entries:
            if isinstance(node, yaml.MappingNode):
                self.err(node, "require must name at least one requirement: "
                               + ", ".join(sorted(_REQUIRE_KEYS)))
            return None
        kw: dict[str, Any] = {}
        if "min_threshold" in entries:
            kw["min_threshold"] = self.number(entries["min_threshold"], "min_threshold", 0, 100)
        if "max_results" in entries:
            kw["max_results"] = self.number(entries["max_results"], "max_results", 1, 4096, True)
        if "max_per_day" in entries:
            kw["max_per_day"] = self.number(entries["max_per_day"], "max_per_day", 0, 10**9, True)
        if "human_review" in entries:
            kw["human_review"] = self.boolean(entries["human_review"], "human_review")
        if "authorization_reference" in entries:
            kw["authorization_reference"] = self.boolean(entries["authorization_reference"],
                                                         "authorization_reference")
        return Requirements(**kw)


def _items(node: yaml.Node | None) -> list[yaml.Node]:
    if node is None:
        return []
    return list(node.value) if isinstance(node, yaml.SequenceNode) else [node]


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def parse_policy(text: str, source: str = "<string>") -> Policy:
    """Parse and validate policy text; raise :class:`PolicyError` listing every problem by line."""
    parser = _Parser(text, source)
    try:
        policy = parser.parse()
    finally:
        parser.loader.dispose()
    if policy is None:
        raise PolicyError(parser.problems)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Policy(**{**policy.__dict__, "sha256": digest})


def load_policy(path: str | os.PathLike) -> Policy:
    """Read and validate the policy file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([f"{p}: cannot read the policy file: {exc.strerror or exc}"]) from exc
    return parse_policy(text, source=str(p))


def shipped_policies() -> list[str]:
    """Names of the example policies shipped with candor (``moratorium-2020``, ...)."""
    root = resources.files("candor") / "policies"
    return sorted(e.name[:-5] for e in root.iterdir() if e.name.endswith(".yaml"))


def shipped_policy_path(name: str) -> Path:
    """The path of a shipped policy by name (``moratorium-2020``) or file name."""
    fname = name if name.endswith(".yaml") else f"{name}.yaml"
    path = Path(str(resources.files("candor") / "policies" / fname))
    if not path.is_file():
        raise PolicyError([f"no shipped policy {name!r}; shipped: {', '.join(shipped_policies())}"])
    return path


def resolve_policy_path(spec: str | os.PathLike) -> Path:
    """A file path, or the name of a shipped policy when no such file exists."""
    p = Path(spec)
    if p.exists() or os.sep in str(spec) or str(spec).endswith((".yaml", ".yml")):
        return p
    return shipped_policy_path(str(spec))


class PolicyStore:
    """The policy in force, re-read when its file changes; an invalid new file is refused.

    The file is checked at most every ``check_interval`` seconds on access (a stat call), so
    there is no watcher thread to manage and every node of a scale-out picks the change up.
    The first load must succeed: a server does not start without a valid policy.
    """

    def __init__(self, path: str | os.PathLike, check_interval: float = 1.0,
                 on_change: Callable[[Policy], None] | None = None,
                 on_error: Callable[[PolicyError], None] | None = None):
        self.path = resolve_policy_path(path)
        self.check_interval = check_interval
        self.on_change = on_change
        self.on_error = on_error
        self.last_error: PolicyError | None = None
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._policy = load_policy(self.path)
        self._checked = time.monotonic()

    def _stat(self) -> tuple | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    @property
    def policy(self) -> Policy:
        """The policy in force, after reloading it if the file changed."""
        if time.monotonic() - self._checked >= self.check_interval:
            self.maybe_reload()
        return self._policy

    def maybe_reload(self) -> bool:
        """Reload if the file changed; True when a new policy came into force."""
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._stat()
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            return self._reload_locked()

    def reload(self) -> bool:
        """Reload now, whether or not the file looks changed."""
        with self._lock:
            self._stamp = self._stat()
            self._checked = time.monotonic()
            return self._reload_locked()

    def _reload_locked(self) -> bool:
        try:
            new = load_policy(self.path)
        except PolicyError as exc:
            self.last_error = exc
            log.error("policy %s refused, keeping %s (sha256 %s): %s", self.path,
                      self._policy.name, self._policy.sha256[:12], exc.message)
            if self.on_error:
                self.on_error(exc)
            return False
        self.last_error = None
        if new.sha256 == self._policy.sha256:
            return False
        self._policy = new
        log.info("policy %s now in force (sha256 %s)", new.name, new.sha256[:12])
        if self.on_change:
            self.on_change(new)
        return True

    def decide(self, req: Request, usage: UsageCounter | None = None) -> Decision:
        return self.policy.decide(req, usage)


def rules_summary(policy: Policy) -> Iterable[str]:
    """One line per rule, for ``candor policy show`` and logs."""
    for r in policy.rules:
        yield f"{r.id}: {r.effect} (line {r.line})"
    yield f"default: {policy.default}"
