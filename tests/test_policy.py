"""The policy language: the shipped moratorium decides as promised; bad files refused by line."""

from __future__ import annotations

import os
import textwrap
from datetime import datetime, timezone

import pytest

from candor.governance.policy import (
    DENY,
    PolicyError,
    PolicyStore,
    Request,
    load_policy,
    parse_policy,
    shipped_policies,
    shipped_policy_path,
)
from candor.governance.principal import Principal
from candor.service.operations import TABLE

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
# every operation that returns or uses a similarity, read from the operation table
IDENTIFY = sorted(name for name, spec in TABLE.items() if spec.uses_similarity)
THRESHOLD = {name: TABLE[name].threshold for name in IDENTIFY}

POLICE = Principal("AKPOLICE", "metro-pd", "law_enforcement", kind="key")
THORN = Principal("AKTHORN", "thorn", "child_safety", kind="key")
PRESS = Principal("AKPRESS", "daily-news", "media", kind="key")


@pytest.fixture(scope="module")
def moratorium():
    return load_policy(shipped_policy_path("moratorium-2020"))


def decide(policy, principal, op, params=None, at=NOW, **kw):
    return policy.decide(Request(principal, op, params or {}, at, **kw))


def test_shipped_policies_all_load():
    names = shipped_policies()
    assert {"moratorium-2020", "eu-ai-act", "open"} <= set(names)
    for name in names:
        assert load_policy(shipped_policy_path(name)).rules is not None


def test_every_similarity_operation_is_listed():
    assert {"CompareFaces", "AssociateFaces", "SearchFaces", "SearchFacesByImage", "SearchUsers",
            "SearchUsersByImage"} <= set(IDENTIFY)


@pytest.mark.parametrize("op", IDENTIFY)
def test_moratorium_denies_police_identification(moratorium, op):
    d = decide(moratorium, POLICE, op, {THRESHOLD.get(op, "FaceMatchThreshold"): 99.9})
    assert d.effect == DENY
    assert d.rule == "police-moratorium-2020"
    assert "police-moratorium-2020" in d.denial_text()
    assert "moratorium" in d.denial_text()


def test_moratorium_leaves_police_detection_and_past_searches(moratorium):
    assert decide(moratorium, POLICE, "DetectFaces").allowed
    before = datetime(2020, 6, 9, 23, 59, tzinfo=timezone.utc)
    assert decide(moratorium, POLICE, "SearchFacesByImage", at=before).allowed
    first_day = datetime(2020, 6, 10, 0, 0, tzinfo=timezone.utc)
    assert not decide(moratorium, POLICE, "SearchFacesByImage", at=first_day).allowed


#: operations whose request sets the threshold (RecognizeCelebrities always runs at the
#: gallery's measured threshold, above every shipped floor)
REQUESTED = [op for op in IDENTIFY if not TABLE[op].threshold_fixed]


@pytest.mark.parametrize("op", REQUESTED)
def test_child_safety_below_floor_is_refused_naming_99(moratorium, op):
    d = decide(moratorium, THORN, op, {THRESHOLD[op]: 80})
    assert d.effect == DENY and d.rule == "child-safety-floor"
    assert "99" in d.message and THRESHOLD[op] in d.message


def test_child_safety_default_threshold_is_80_and_refused(moratorium):
    d = decide(moratorium, THORN, "SearchFacesByImage", {"CollectionId": "missing"})
    assert not d.allowed and "(the default)" in d.message and "99" in d.message


@pytest.mark.parametrize("op", IDENTIFY)
def test_child_safety_at_floor_is_allowed(moratorium, op):
    d = decide(moratorium, THORN, op, {THRESHOLD[op]: 99})
    assert d.allowed and d.rule == "child-safety-floor"
    assert d.constraints == {"min_threshold": 99}


@pytest.mark.parametrize("op", IDENTIFY + ["DetectFaces", "IndexFaces"])
def test_media_as_usual(moratorium, op):
    d = decide(moratorium, PRESS, op, {THRESHOLD.get(op, "X"): 50})
    assert d.allowed and d.rule == "default"


def test_threshold_that_is_not_a_number_is_refused(moratorium):
    assert not decide(moratorium, THORN, "SearchFaces", {"FaceMatchThreshold": "99"}).allowed


def test_eu_authorisation_reference_and_caps():
    eu = load_policy(shipped_policy_path("eu-ai-act"))
    params = {"FaceMatchThreshold": 99, "CollectionId": "c"}
    refused = decide(eu, POLICE, "SearchFacesByImage", params)
    assert not refused.allowed and "authorisation reference" in refused.message
    ok = decide(eu, POLICE, "SearchFacesByImage", params, authorization_reference="AG-2026-117")
    assert ok.allowed and ok.constraints["human_review"] is True

    used = {"n": 0}

    def usage(rule, org, since):
        assert rule == "bulk-indexing-cap" and org == "daily-news"
        assert since == datetime(2026, 11, 22, tzinfo=timezone.utc)
        return used["n"]

    index = Request(PRESS, "IndexFaces", {"CollectionId": "c"}, NOW)
    first = eu.decide(index, usage)
    assert first.allowed and first.param_overrides == {"MaxFaces": 10}
    assert not eu.decide(Request(PRESS, "IndexFaces", {"MaxFaces": 50}, NOW), usage).allowed
    used["n"] = 1000
    capped = eu.decide(index, usage)
    assert not capped.allowed and "1000" in capped.message
    assert not eu.decide(index, None).allowed  # a cap that cannot be counted fails closed


POLICY = """\
version: 1
default: deny
categories: [anti_trafficking]
rules:
  - id: press-only-their-collections
    match:
      org: "daily-*"
      collection: ["press-*"]
      operation: Search*
    effect: allow
  - id: detect-for-all
    match: {operation: DetectFaces}
    effect: allow
  - id: trial
    match: {category: anti_trafficking, from: 2025-01-01, until: 2025-12-31}
    effect: allow
"""


def test_globs_collections_windows_and_default_deny():
    p = parse_policy(POLICY)
    assert decide(p, PRESS, "SearchFaces", {"CollectionId": "press-archive"}).allowed
    assert not decide(p, PRESS, "SearchFaces", {"CollectionId": "passports"}).allowed
    assert not decide(p, PRESS, "SearchFaces").allowed  # no collection: the rule cannot match
    d = decide(p, POLICE, "IndexFaces")
    assert d.rule == "default" and not d.allowed and "Denied by the policy default" in \
        d.denial_text()
    assert decide(p, POLICE, "DetectFaces").allowed
    ngo = Principal("k", "polaris", "anti_trafficking")
    assert decide(p, ngo, "IndexFaces", at=datetime(2025, 12, 31, 23, 0,
                                                    tzinfo=timezone.utc)).allowed
    assert not decide(p, ngo, "IndexFaces", at=datetime(2026, 1, 1, tzinfo=timezone.utc)).allowed


BAD = [
    ("default: allow\nrules:\n  - id: a\n    effect: deny\n    mtach: {}\n", 5,
     "unknown key 'mtach'"),
    ("default: allow\nrules:\n  - id: a\n    effect: forbid\n", 4, "effect must be"),
    ("default: allow\nrules:\n  - id: a\n    effect: deny\n    match:\n"
     "      category: law-enforcement\n", 6, "unknown category 'law-enforcement'"),
    ("default: allow\nrules:\n  - id: a\n    effect: deny\n    match:\n"
     "      operation: [SearchFaces, SerchFacesByImage]\n", 6, "'SerchFacesByImage'"),
    ("default: allow\ndefault: deny\n", 2, "duplicate key 'default'"),
    ("default: allow\nrules:\n  - id: a\n    effect: deny\n  - id: a\n    effect: allow\n", 5,
     "duplicate rule id 'a'"),
    ("rules: []\n", 1, "default: allow"),
    ("default: allow\nrules:\n  - id: a\n    effect: deny\n   match: {}\n", 5, "not valid YAML"),
    ("default: allow\nrules:\n  - id: a\n    effect: require\n", 3, "needs a 'require'"),
    ("default: allow\nrules:\n  - id: a\n    effect: require\n    require:\n"
     "      min_threshold: 150\n", 6, "min_threshold must be"),
    ("default: allow\nrules:\n  - id: a\n    effect: deny\n    match: {from: 2021-01-01, "
     "until: 2020-01-01}\n", 5, "until is before from"),
    ("default: allow\nrules:\n  - id: a\n    effect: deny\n    match: {from: June}\n", 5,
     "from must be a date"),
    ("default: allow\nrules:\n  - id: a\n    effect: deny\n    match:\n"
     "      until: !!python/object:datetime.date 2021\n", 6, "cannot read this value"),
    ("default: allow\nrules:\n  - id: a\n    effect: deny\n    match:\n"
     "      kind: [identify, verfy]\n", 6, "unknown operation kind 'verfy'"),
]


@pytest.mark.parametrize(("text", "line", "words"), BAD)
def test_invalid_policy_is_refused_naming_the_line(text, line, words):
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    assert words in info.value.message
    assert any(problem.startswith(f"p.yaml:{line}:") and words in problem
               for problem in info.value.problems), info.value.problems


def test_empty_policy_refused():
    with pytest.raises(PolicyError, match="empty"):
        parse_policy("", source="p.yaml")


def _write(path, text, bump):
    path.write_text(textwrap.dedent(text))
    st = path.stat()  # make the change visible even on coarse-mtime file systems
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_hot_reload_keeps_old_policy_when_new_is_invalid(tmp_path):
    path = tmp_path / "policy.yaml"
    _write(path, "default: allow\n", 0)
    store = PolicyStore(path, check_interval=0)
    assert decide(store.policy, POLICE, "SearchFaces").allowed

    _write(path, """\
        default: allow
        rules:
          - id: stop
            match: {category: law_enforcement}
            effect: deny
        """, 1)
    assert decide(store.policy, POLICE, "SearchFaces").rule == "stop"
    good_hash = store.policy.sha256

    _write(path, """\
        default: allow
        rules:
          - id: stop
            effect: dney
        """, 2)
    policy = store.policy  # the reload is attempted and refused
    assert policy.sha256 == good_hash
    assert decide(policy, POLICE, "SearchFaces").rule == "stop"
    assert store.last_error is not None and ":4:" in store.last_error.problems[0]

    _write(path, "default: deny\n", 3)
    assert store.policy.default == "deny" and store.last_error is None


def test_first_load_must_be_valid(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("default: maybe\n")
    with pytest.raises(PolicyError, match="policy.yaml:1:"):
        PolicyStore(path)


def test_principal_category_spelling():
    with pytest.raises(Exception, match="category"):
        Principal("k", "org", "Law-Enforcement")
    assert Principal.local("acme").category == "general"


def test_undeclared_category_is_refused(moratorium):
    """A key issued as 'police' must not slip past the rules written for law_enforcement."""
    d = decide(moratorium, Principal("k", "metro-pd", "police"), "SearchFaces")
    assert not d.allowed and d.rule == "unknown-category" and "'police'" in d.message
    declared = parse_policy("default: allow\ncategories: [police]\n")
    assert decide(declared, Principal("k", "metro-pd", "police"), "SearchFaces").allowed


def test_date_times_in_quotes_with_zone():
    p = parse_policy('default: allow\nrules:\n  - id: w\n    effect: deny\n    match:\n'
                     '      from: "2020-06-10T12:00:00Z"\n      until: "2020-06-10T13:00:00+00:00"\n')
    assert decide(p, PRESS, "DetectFaces", at=datetime(2020, 6, 10, 12, 30,
                                                       tzinfo=timezone.utc)).rule == "w"
    assert decide(p, PRESS, "DetectFaces", at=datetime(2020, 6, 10, 11, 59,
                                                       tzinfo=timezone.utc)).rule == "default"


def test_threshold_defaults_are_verification_80_and_identification_85():
    from candor.governance.gate import effective_threshold

    assert effective_threshold("CompareFaces", {}) == 80.0
    for op in ("SearchFaces", "SearchFacesByImage", "SearchUsers", "SearchUsersByImage"):
        assert effective_threshold(op, {}) == 85.0
    assert effective_threshold("SearchFacesByImage", {"FaceMatchThreshold": 70}) == 70.0
    assert effective_threshold("DetectFaces", {}) is None
    assert effective_threshold("AssociateFaces", {}) == 75.0


def test_kind_match_covers_an_operation_added_later(moratorium):
    """A similarity operation the policy file never names is covered by its kind."""
    from candor.service import operations

    added = operations.OperationSpec(
        "CompareFacesLater", "verify", biometric=True, mutates=False, threshold="T",
        default_threshold=80.0, matches=lambda r: [])
    operations.describe(added)
    try:
        assert decide(moratorium, POLICE, "CompareFacesLater", {"T": 99.9}).rule \
            == "police-moratorium-2020"
        d = decide(moratorium, THORN, "CompareFacesLater")
        assert not d.allowed and d.rule == "child-safety-floor" and "T 80 (the default)" in d.message
    finally:
        del operations.TABLE["CompareFacesLater"]


def test_a_fixed_threshold_is_never_read_from_the_request(moratorium):
    """RecognizeCelebrities has no threshold member in Rekognition's request: a value sent
    anyway must not be what the floor is compared with."""
    spec = TABLE["RecognizeCelebrities"]
    assert spec.threshold_fixed and spec.default_threshold >= 99
    assert decide(moratorium, THORN, "RecognizeCelebrities", {spec.threshold: 1}).allowed
    assert spec.threshold_in({spec.threshold: 1}) == spec.default_threshold
