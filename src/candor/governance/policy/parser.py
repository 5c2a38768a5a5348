"""Policy text -> :class:`~candor.governance.policy.model.Policy`, validated on YAML nodes, not
loaded values, so that every error names its line: a policy that is silently misread (a typo in a
category, a duplicate key) would be a moratorium that does not hold.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from candor.clock import as_utc, day_end, day_start
from candor.governance.policy.model import (
    ALLOW,
    DENY,
    REQUIRE,
    Match,
    Policy,
    PolicyError,
    Requirements,
    Rule,
    Share,
    known_operations,
    parse_when,
)
from candor.governance.principal import KNOWN_CATEGORIES, valid_category_name
from candor.service.operations import KINDS

# --------------------------------------------------------------------------------------------
# Parsing and validation, on YAML nodes so that errors carry line numbers

_TOP_KEYS = {"version", "name", "description", "default", "audit", "categories", "rules",
             "shares"}
_SHARE_KEYS = {"id", "description", "owner", "collection", "with", "operations"}
_RULE_KEYS = {"id", "description", "effect", "match", "require", "message"}
_MATCH_KEYS = {"category", "org", "operation", "kind", "collection", "from", "until"}
_REQUIRE_KEYS = {"min_threshold", "max_results", "human_review", "authorization_reference",
                 "max_per_day", "review_expires_hours"}


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
            return as_utc(val)
        if isinstance(val, date):
            return day_end(val) if end else day_start(val)
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
        shares = self.shares(top["shares"]) if "shares" in top else ()
        if self.problems:
            return None
        return Policy(name=name or "policy", default=default, rules=tuple(rules), audit=audit,
                      categories=tuple(categories), description=description or "",
                      source=self.source, shares=shares)

    def shares(self, node: yaml.Node) -> tuple[Share, ...]:
        """``shares:``: explicit rules that let organisations use another's collection."""
        if not isinstance(node, yaml.SequenceNode):
            if self.value(node) is not None:
                self.err(node, "shares must be a list")
            return ()
        out: list[Share] = []
        seen: dict[str, int] = {}
        for item in node.value:
            before = len(self.problems)
            entries = self.mapping(item, "a share", _SHARE_KEYS)
            for key in ("id", "owner", "collection", "with"):
                if key not in entries and isinstance(item, yaml.MappingNode):
                    self.err(item, f"every share needs {key!r}")
            sid = self.string(entries["id"], "share id") if "id" in entries else None
            owner = self.string(entries["owner"], "owner") if "owner" in entries else None
            coll = self.string(entries["collection"], "collection") \
                if "collection" in entries else None
            with_orgs = self.strings(entries["with"], "with") if "with" in entries else None
            ops = self.strings(entries["operations"], "operations") \
                if "operations" in entries else None
            known = known_operations()
            for onode in (entries["operations"].value if isinstance(
                    entries.get("operations"), yaml.SequenceNode) else
                    [entries["operations"]] if "operations" in entries else []):
                if not any(fnmatchcase(name, str(onode.value)) for name in known):
                    self.err(onode, f"operation {onode.value!r} matches no operation")
            if owner and with_orgs and owner in with_orgs:
                self.err(entries["with"], f"the owner {owner!r} needs no share with itself")
            description = self.string(entries["description"], "description") \
                if "description" in entries else ""
            if len(self.problems) > before or None in (sid, owner, coll, with_orgs):
                continue
            line = item.start_mark.line + 1
            if sid in seen:
                self.err(item, f"duplicate share id {sid!r} (first on line {seen[sid]})")
                continue
            seen[sid] = line
            out.append(Share(id=sid, owner=owner, collection=coll, with_orgs=with_orgs,
                             operations=ops, description=description or "", line=line))
        return tuple(out)

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
        for key in ("category", "org", "operation", "kind", "collection"):
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
        for knode in _items(entries.get("kind")) if fields.get("kind") else ():
            if knode.value not in KINDS:
                self.err(knode, f"unknown operation kind {knode.value!r}; known: "
                                + ", ".join(KINDS))
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
        if "review_expires_hours" in entries:
            node_ = entries["review_expires_hours"]
            kw["review_expires_hours"] = self.number(node_, "review_expires_hours", 1, 8760)
            if not kw.get("human_review"):
                self.err(node_, "review_expires_hours needs human_review: true")
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
