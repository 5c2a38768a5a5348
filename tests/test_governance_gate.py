"""The gate: decisions hold on the call path; denied calls do no work; every call is recorded."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import create_engine, event, text

from candor.errors import AccessDenied, InvalidParameter, ResourceNotFound
from candor.governance.gate import Gate
from candor.governance.ledger import AuditUnavailable, Ledger
from candor.governance.policy import PolicyStore, parse_policy, shipped_policy_path
from candor.governance.principal import Principal
from candor.store import migrations

POLICE = Principal("AKPOLICE", "metro-pd", "law_enforcement", kind="key")
THORN = Principal("AKTHORN", "thorn", "child_safety", kind="key")
PRESS = Principal("AKPRESS", "daily-news", "media", kind="key")
PHOTO = b"\xff\xd8 not really a jpeg, the stand-in service never decodes it"


class Rekognition:
    """A stand-in for the service layer with Rekognition's response shapes; it records what
    ran so the tests can tell whether a denied call did any work."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.backend_name = "dlib"

    def call(self, name, params):
        self.calls.append((name, params))
        if params.get("CollectionId") == "missing":
            raise ResourceNotFound("no such collection")
        if name == "SearchFacesByImage":
            return {"SearchedFaceBoundingBox": {"Width": 0.5}, "SearchedFaceConfidence": 99.9,
                    "FaceMatches": [{"Similarity": 99.4, "Face": {"FaceId": "f-1"}}],
                    "FaceModelVersion": "1.0"}
        if name == "IndexFaces":
            return {"FaceRecords": [{"Face": {"FaceId": "f-9"}}], "UnindexedFaces": []}
        if name == "CompareFaces":
            return {"SourceImageFace": {"Confidence": 99}, "UnmatchedFaces": [{}],
                    "FaceMatches": [{"Similarity": 99.1, "Face": {}}]}
        return {}


def _fast(dbapi_conn, _record):
    dbapi_conn.execute("PRAGMA synchronous = OFF")


@pytest.fixture()
def db(tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    event.listen(eng, "connect", _fast)  # tests need no durability; commits stay cheap
    migrations.migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture()
def service():
    return Rekognition()


@pytest.fixture()
def gate(db, service):
    return Gate(service, Ledger(db), str(shipped_policy_path("moratorium-2020")))


def search(threshold=None):
    params = {"CollectionId": "missing-children", "Image": {"Bytes": PHOTO}}
    if threshold is not None:
        params["FaceMatchThreshold"] = threshold
    return params


def test_police_search_is_denied_without_work_and_recorded(gate, service):
    with pytest.raises(AccessDenied, match="police-moratorium-2020") as info:
        gate.call(POLICE, "SearchFacesByImage", search(99), request_id="req-1")
    assert info.value.code == "AccessDeniedException"
    assert service.calls == []
    (rec,) = gate.ledger.tail(1)
    assert rec["decision"] == "deny" and rec["rule"] == "police-moratorium-2020"
    assert rec["request_id"] == "req-1" and rec["org"] == "metro-pd"
    assert rec["category"] == "law_enforcement" and rec["principal"] == "AKPOLICE"
    assert rec["image_sha256"] == [hashlib.sha256(PHOTO).hexdigest()]
    assert rec["threshold"] == 99.0 and rec["collection"] == "missing-children"


def test_child_safety_floor_then_allowed_with_matches_recorded(gate, service):
    with pytest.raises(AccessDenied, match="floor of 99"):
        gate.call(THORN, "SearchFacesByImage", search(80))
    assert service.calls == []
    resp = gate.call(THORN, "SearchFacesByImage", search(99))
    assert resp["FaceMatches"][0]["Face"]["FaceId"] == "f-1"
    assert len(service.calls) == 1
    denied, allowed = gate.ledger.tail(2)
    assert (denied["decision"], denied["threshold"]) == ("deny", 80.0)
    assert allowed["decision"] == "allow" and allowed["rule"] == "child-safety-floor"
    assert allowed["faces_found"] == 1 and allowed["scoring"].startswith("dlib|")
    assert allowed["matches"] == [{"FaceId": "f-1", "Similarity": 99.4}]
    assert gate.ledger.verify().ok


def test_media_as_usual_and_non_biometric_calls_not_recorded(gate, service):
    gate.call(PRESS, "CompareFaces", {"SourceImage": {"Bytes": b"a"},
                                      "TargetImage": {"Bytes": b"b"}})
    gate.call(PRESS, "ListCollections", {})
    (rec,) = gate.ledger.tail(5)
    assert rec["operation"] == "CompareFaces" and rec["threshold"] == 80.0
    assert rec["faces_found"] == 3 and rec["matches"] == [{"Similarity": 99.1}]
    assert rec["image_sha256"] == [hashlib.sha256(x).hexdigest() for x in (b"a", b"b")]


def test_open_policy_records_everything(db, service):
    gate = Gate(service, Ledger(db))  # no policy: the shipped open one
    gate.call(POLICE, "ListCollections", {})
    gate.call(POLICE, "SearchFacesByImage", search())
    assert [r["operation"] for r in gate.ledger.tail(5)] == ["ListCollections",
                                                             "SearchFacesByImage"]


def test_failed_operation_is_recorded_and_reraised(gate):
    with pytest.raises(ResourceNotFound):
        gate.call(PRESS, "SearchFacesByImage", {"CollectionId": "missing"})
    (rec,) = gate.ledger.tail(1)
    assert rec["decision"] == "failed" and rec["matches"] is None
    assert rec["details"] == {"error": "ResourceNotFoundException"}


def test_authorisation_reference_and_review_are_kept_with_the_record(db, service):
    gate = Gate(service, Ledger(db), str(shipped_policy_path("eu-ai-act")))
    with pytest.raises(AccessDenied, match="authorisation reference"):
        gate.call(POLICE, "SearchFacesByImage", search(99))
    assert service.calls == []
    gate.call(POLICE, "SearchFacesByImage", search(99), authorization_reference="AG-2026-117")
    rec = gate.ledger.tail(1)[0]
    assert rec["rule"] == "law-enforcement-authorised-identification"
    assert rec["details"]["authorization_reference"] == "AG-2026-117"
    assert rec["details"]["constraints"]["human_review"] is True
    assert gate.ledger.verify().ok


def test_no_unaudited_work_when_the_ledger_is_down(db, service):
    gate = Gate(service, Ledger(db, retries=1))
    with db.begin() as c:
        c.execute(text("DROP TABLE audit_records"))
    with pytest.raises(AuditUnavailable):
        gate.call(PRESS, "IndexFaces", {"CollectionId": "c", "Image": {"Bytes": PHOTO}})
    # the faces the call indexed were removed again
    assert service.calls[-1] == ("DeleteFaces", {"CollectionId": "c", "FaceIds": ["f-9"]})
    with pytest.raises(AuditUnavailable):  # a denial that cannot be recorded still does no work
        Gate(service, Ledger(db, retries=1), str(shipped_policy_path("moratorium-2020"))).call(
            POLICE, "SearchFaces", {"CollectionId": "c", "FaceId": "f"})
    assert service.calls[-1][0] == "DeleteFaces"


def test_max_results_override_and_daily_cap(db, service):
    policy = parse_policy("""
default: allow
rules:
  - id: cap
    match: {operation: IndexFaces}
    effect: require
    require: {max_per_day: 2, max_results: 5}
""")
    gate = Gate(service, Ledger(db), policy)
    for _ in range(2):
        gate.call(PRESS, "IndexFaces", {"CollectionId": "c", "Image": {"Bytes": PHOTO}})
    assert service.calls[0][1]["MaxFaces"] == 5
    with pytest.raises(AccessDenied, match="daily cap of 2"):
        gate.call(PRESS, "IndexFaces", {"CollectionId": "c", "Image": {"Bytes": PHOTO}})
    gate.call(THORN, "IndexFaces", {"CollectionId": "c", "Image": {"Bytes": PHOTO}})  # per org
    assert len(service.calls) == 3


def test_hot_reloaded_policy_applies_to_the_next_call(db, service, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("default: allow\n")
    gate = Gate(service, Ledger(db), PolicyStore(path, check_interval=0))
    gate.call(POLICE, "DetectFaces", {"Image": {"Bytes": PHOTO}})
    path.write_text("default: deny\nrules: []\n")
    with pytest.raises(AccessDenied, match="policy default"):
        gate.call(POLICE, "DetectFaces", {"Image": {"Bytes": PHOTO}})


def test_a_call_needs_a_principal(gate, service):
    with pytest.raises(AccessDenied):
        gate.call(None, "DetectFaces", {})
    assert service.calls == []


def test_real_service_behind_the_gate(tmp_path):
    """The gate over the real service layer and its store: one database holds both."""
    from candor.service import Service

    svc = Service(data_dir=tmp_path / "data")
    policy = parse_policy("""
default: allow
audit: all
rules:
  - id: no-deletes-by-press
    match: {category: media, operation: Delete*}
    effect: deny
""")
    gate = Gate.for_service(svc, policy)
    press = gate.as_principal(PRESS)
    press.call("CreateCollection", {"CollectionId": "archive"})
    with pytest.raises(AccessDenied, match="no-deletes-by-press"):
        press.call("DeleteCollection", {"CollectionId": "archive"})
    assert press.call("ListCollections", {})["CollectionIds"] == ["archive"]
    with pytest.raises(InvalidParameter):
        press.call("CreateCollection", {"CollectionId": "bad name!"})
    ops = [(r["operation"], r["decision"]) for r in gate.ledger.tail(10)]
    assert ops == [("CreateCollection", "allow"), ("DeleteCollection", "deny"),
                   ("ListCollections", "allow"), ("CreateCollection", "failed")]
    assert gate.ledger.verify().ok
    assert gate.ledger.read_anchor() == gate.ledger.head()


def test_governed_service_for_the_cli_and_python_doors(tmp_path, monkeypatch):
    from candor.governance.gate import governed
    from candor.service import Service

    monkeypatch.setenv("CANDOR_POLICY", "moratorium-2020")
    monkeypatch.setenv("CANDOR_ORG", "metro-pd")
    monkeypatch.setenv("CANDOR_CATEGORY", "law_enforcement")
    svc = governed(Service(data_dir=tmp_path / "d"))
    svc.call("CreateCollection", {"CollectionId": "mugshots"})
    with pytest.raises(AccessDenied, match="moratorium"):
        svc.call("SearchFaces", {"CollectionId": "mugshots", "FaceId": "x" * 36})
    rec = svc.gate.ledger.tail(1)[0]
    assert (rec["principal"], rec["decision"]) == ("local:metro-pd", "deny")
    assert svc.data_dir == tmp_path / "d"  # still looks like the service it wraps
