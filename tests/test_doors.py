"""No door around the gate: every similarity under policy over real HTTP (boto3 against
``candor serve``), a gateway that needs a gate, a package that exports no bare service."""

from __future__ import annotations

import pytest

pytest.importorskip("boto3")
from postgres_helper import store_url
from serve_helper import SAMPLES, client, photo, serve  # noqa: E402

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="test photos not found")


@pytest.fixture(scope="module")
def server(tmp_path_factory, store_backend):
    tmp = tmp_path_factory.mktemp("doors")
    data = tmp / "data"
    with serve(data, tmp, "--policy", "moratorium-2020") as url:
        _, _, ops = client(url, data, "candor-ops", "general")
        ops.create_collection(CollectionId="people")
        for who in ("obama", "biden"):
            face = ops.index_faces(CollectionId="people", ExternalImageId=who,
                                   Image={"Bytes": photo(f"{who}/{who}.jpg")})
            ops.create_user(CollectionId="people", UserId=f"u-{who}")
            ops.associate_faces(CollectionId="people", UserId=f"u-{who}",
                                FaceIds=[face["FaceRecords"][0]["Face"]["FaceId"]])
        yield url, data


def test_police_cannot_identify_through_associate_faces(server):
    """Issue 11: a law_enforcement key, denied every search, indexed a probe photo and learned
    its similarity to each user from AssociateFaces' LOW_MATCH_CONFIDENCE answers."""
    url, data = server
    # keys of the collection's own organisation (tenancy keeps other organisations out anyway)
    _, _, police = client(url, data, "candor-ops", "law_enforcement")
    with pytest.raises(police.exceptions.AccessDeniedException):
        police.search_users_by_image(CollectionId="people", Image={"Bytes": photo("obama/obama2.jpg")})
    probe = police.index_faces(CollectionId="people", ExternalImageId="probe",
                               Image={"Bytes": photo("obama/obama2.jpg")})
    probe_id = probe["FaceRecords"][0]["Face"]["FaceId"]
    for user in ("u-obama", "u-biden"):
        with pytest.raises(police.exceptions.AccessDeniedException, match="police-moratorium-2020"):
            police.associate_faces(CollectionId="people", UserId=user, FaceIds=[probe_id],
                                   UserMatchThreshold=100)


def test_child_safety_floor_applies_to_associate_faces(server):
    url, data = server
    _, _, thorn = client(url, data, "candor-ops", "child_safety")
    probe = thorn.index_faces(CollectionId="people", ExternalImageId="thorn-probe",
                              Image={"Bytes": photo("biden/biden2.jpg")})
    probe_id = probe["FaceRecords"][0]["Face"]["FaceId"]
    with pytest.raises(thorn.exceptions.AccessDeniedException, match="floor of 99"):
        thorn.associate_faces(CollectionId="people", UserId="u-biden", FaceIds=[probe_id])


def test_the_gateway_cannot_be_built_without_a_gate(tmp_path):
    from types import SimpleNamespace

    from candor.api.app import Gateway
    from candor.api.keys import KeyStore

    keys = KeyStore.open(tmp_path, store_url())
    with pytest.raises(TypeError):
        Gateway(SimpleNamespace(settings=None), keys, workers=1)
    with pytest.raises(TypeError, match="governance gate"):
        Gateway(SimpleNamespace(settings=None), keys, workers=1, gate=None)


def test_the_package_exports_no_bare_service(tmp_path):
    import candor
    from candor.governance.gate import BoundGate

    assert "Service" not in candor.__all__
    assert "connect" in candor.__all__
    rek = candor.connect(tmp_path / "data", org="thorn", category="child_safety",
                         policy="moratorium-2020")
    assert isinstance(rek, BoundGate)
    assert rek.principal.org == "thorn" and rek.principal.category == "child_safety"
    rek.call("CreateCollection", {"CollectionId": "c"})
    with pytest.raises(candor.CandorError, match="floor of 99"):
        rek.call("SearchFaces", {"CollectionId": "c", "FaceId": "0" * 8 + "-0000-0000-0000-" + "0" * 12})
    assert isinstance(candor.default_service(), BoundGate)


# ---------------------------------------------------------------- candor's own operations
ADMIN_DENY = """\
version: 1
name: locked
default: allow
rules:
  - id: no-{op}
    match: {{operation: {op}}}
    effect: deny
    message: {op} is not permitted here
"""


def _cli(*args):
    from typer.testing import CliRunner

    from candor.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _ledger(data):
    from candor.governance.ledger import Ledger
    from candor.store import open_store

    return Ledger.for_store(open_store(data, store_url()))


def _deny(tmp_path, op):
    path = tmp_path / f"no-{op}.yaml"
    path.write_text(ADMIN_DENY.format(op=op))
    return path


@pytest.mark.parametrize(("op", "args"), [
    ("CreateAccessKey", ("keys", "create", "--org", "thorn", "--category", "child_safety")),
    ("Erase", ("erase", "--external-image-id", "someone")),
    ("SetRetention", ("retention", "set", "c", "30")),
    ("Purge", ("retention", "purge")),
])
def test_candor_operations_are_decided_by_the_policy_and_recorded(tmp_path, op, args):
    from candor.store import open_store

    data = tmp_path / "data"
    open_store(data, store_url()).create_collection("c", "1.0", org="ops-team")
    denied = _cli("--as", "ops-team", "--policy", _deny(tmp_path, op), *args, "--data-dir", data)
    assert denied.exit_code != 0 and f"no-{op}" in denied.output, denied.output
    rec = _ledger(data).tail(1)[0]
    assert (rec["operation"], rec["decision"], rec["rule"], rec["org"]) == \
        (op, "deny", f"no-{op}", "ops-team")
    allowed = _cli("--as", "ops-team", *args, "--data-dir", data)
    assert allowed.exit_code == 0, allowed.output
    ops = [(r["operation"], r["decision"]) for r in _ledger(data).tail(3)]
    assert any(o == op and d != "deny" for o, d in ops), ops


def test_key_revocation_is_decided_and_recorded(tmp_path):
    data = tmp_path / "data"
    created = _cli("keys", "create", "--org", "thorn", "--json", "--data-dir", data)
    key_id = __import__("json").loads(created.output)["AccessKeyId"]
    denied = _cli("--policy", _deny(tmp_path, "RevokeAccessKey"), "keys", "revoke", key_id,
                  "--data-dir", data)
    assert denied.exit_code != 0 and "no-RevokeAccessKey" in denied.output
    listed = __import__("json").loads(_cli("keys", "list", "--json", "--data-dir", data).output)
    assert listed[0]["RevokedAt"] is None  # refused: nothing was done
    assert _cli("keys", "revoke", key_id, "--data-dir", data).exit_code == 0
    recs = [(r["operation"], r["decision"]) for r in _ledger(data).tail(4)]
    assert recs == [("CreateAccessKey", "allow"), ("RevokeAccessKey", "deny"),
                    ("RevokeAccessKey", "allow")]


def test_a_policy_reload_is_recorded_with_its_sha256(tmp_path):
    import hashlib
    import os

    from candor.governance.gate import Gate
    from candor.governance.policy import PolicyStore
    from candor.governance.principal import Principal
    from candor.service import Service

    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nname: first\ndefault: allow\n")
    service = Service(tmp_path / "data")
    gate = Gate.for_service(service, PolicyStore(path, check_interval=0))
    who = Principal.local("operator", "general")
    gate.call(who, "CreateCollection", {"CollectionId": "c"})
    text = "version: 1\nname: second\ndefault: allow\naudit: all\n"
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    gate.call(who, "DescribeCollection", {"CollectionId": "c"})
    assert gate.policy.name == "second"
    reload = [r for r in gate.ledger.tail(5) if r["operation"] == "ReloadPolicy"]
    assert len(reload) == 1 and reload[0]["decision"] == "allow"
    assert reload[0]["details"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert reload[0]["principal"] == "system:policy"


def test_the_retention_timer_acts_as_system_retention_under_the_policy(tmp_path):
    import threading
    from types import SimpleNamespace

    from candor.api.app import Gateway
    from candor.api.keys import KeyStore
    from candor.governance.gate import Gate
    from candor.governance.ledger import Ledger

    keys = KeyStore.open(tmp_path / "data", store_url())
    ledger = Ledger.for_store(keys.store)
    gate = Gate(SimpleNamespace(), ledger, str(_deny(tmp_path, "Purge")))
    gateway = Gateway(SimpleNamespace(settings=None), keys, workers=1, gate=gate,
                      retention_interval=3600)
    recorded = threading.Event()
    original = ledger.append

    def append(**record):
        out = original(**record)
        recorded.set()
        return out

    ledger.append = append
    gateway.start()
    try:
        assert recorded.wait(60), "the timer's first round recorded nothing"
    finally:
        gateway.close()
    rec = ledger.tail(1)[0]
    assert (rec["operation"], rec["decision"], rec["rule"]) == ("Purge", "deny", "no-Purge")
    assert (rec["principal"], rec["org"]) == ("system:retention", "operator")
