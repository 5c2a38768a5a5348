"""The policy language: ordered YAML rules that decide, per call, whether a principal may run it.

Three parts: :mod:`.model` (the parsed policy and how it decides), :mod:`.parser` (YAML text to
a policy, every error with its line) and :mod:`.loader` (files, shipped policies, the store that
reloads a changed file). Every public name is re-exported here. See docs/policies.md.
"""

from candor.governance.policy.loader import (
    PolicyStore,
    load_policy,
    resolve_policy_path,
    shipped_policies,
    shipped_policy_path,
)
from candor.governance.policy.model import (
    ALLOW,
    DENY,
    REQUIRE,
    UNKNOWN_CATEGORY_RULE,
    Decision,
    Match,
    Policy,
    PolicyError,
    Request,
    Requirements,
    Rule,
    Share,
    UsageCounter,
    known_operations,
    parse_when,
    rules_summary,
)
from candor.governance.policy.parser import parse_policy

__all__ = [
    "ALLOW", "DENY", "REQUIRE", "UNKNOWN_CATEGORY_RULE",
    "Decision", "Match", "Policy", "PolicyError", "PolicyStore", "Request", "Requirements", "Rule",
    "Share",
    "UsageCounter", "known_operations", "load_policy", "parse_policy",
    "parse_when", "resolve_policy_path", "rules_summary", "shipped_policies", "shipped_policy_path",
]
