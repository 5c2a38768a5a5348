"""The ledger against hostile input: values that change on the database round trip, several
edits at once, and a deleted anchor. Real store (SQLite file), real ``candor`` CLI, and a fresh
process for every verify that must read back what another wrote."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from postgres_helper import store_url
from sqlalchemy import delete, insert, update
from typer.testing import CliRunner

from candor.cli import app
from candor.governance.ledger import GENESIS, Ledger, UnrecordableValue, record_hash
from candor.store import open_store
from candor.store.schema import audit_records as T

runner = CliRunner()


def candor(*args: object) -> subprocess.CompletedProcess:
    """``candor ...`` in a fresh process (the records are re-read from the database file)."""
    return subprocess.run([sys.executable, "-c", "from candor.cli import main; main()",
                           *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def home(tmp_path):
    data = tmp_path / "data"
    store = open_store(data, store_url())
    return data, store, Ledger.for_store(store)


def fill(ledger: Ledger, n: int = 10) -> None:
    for i in range(n):
        ledger.append(operation="SearchFacesByImage", decision="allow", org="acme",
                      collection="c1", threshold=90 + i,
                      matches=[{"FaceId": f"face-{i}", "Similarity": 99.25}])


def test_negative_zero_threshold_verifies_after_the_round_trip(home):
    data, _, ledger = home
    ledger.append(operation="SearchFaces", decision="allow", collection="c", threshold=-0.0)
    ledger.append(operation="SearchFaces", decision="allow", collection="c", threshold=80.0)
    done = candor("audit", "verify", "--data-dir", data)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 records, chain intact" in done.stdout


def test_awkward_values_verify_in_a_fresh_process(home):
    data, _, ledger = home
    awkward = [
        {"threshold": 1e-300}, {"threshold": 0.1 + 0.2}, {"threshold": 99},
        {"threshold": 1e300}, {"threshold": -2.5e-7},
        {"matches": [{"FaceId": "f", "Similarity": -0.0}, {"FaceId": "g", "Similarity": 99.0}]},
        {"matches": [{"n": 2 ** 63 + 1, "m": -(10 ** 30), "x": 2.0 ** 60, "y": 1e-320}]},
        {"org": "Zürich-警察 🙂", "collection": "ca\u0301fe\u0000", "rule": "\u202eevil"},
        {"details": {"z": [[1, [2.5, -0.0, [[]]]], {"b": "é", "a": None}], "a": {"k": True}}},
        {"details": {"1": "x", "keys": {"β": 1, "a": 0.30000000000000004}}},
        {"faces_found": 3, "image_sha256": ["ab" * 32, "cd" * 32]},
    ]
    for fields in awkward:
        ledger.append(operation="SearchFaces", decision="allow", **fields)
    done = candor("audit", "verify", "--json", "--data-dir", data)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["checked"] == len(awkward)
    # NUL cannot be stored in PostgreSQL's text: it is recorded as U+FFFD on both stores
    assert [r["collection"] for r in ledger.tail(len(awkward)) if r.get("collection")] == [
        "ca\u0301fe\ufffd"]


def test_numbers_are_hashed_by_value_not_by_type():
    base = {"seq": 1, "prev_hash": GENESIS, "operation": "X", "decision": "allow"}
    assert record_hash({**base, "threshold": -0.0}) == record_hash({**base, "threshold": 0})
    assert record_hash({**base, "threshold": 99.0}) == record_hash({**base, "threshold": 99})
    assert record_hash({**base, "matches": [{"b": 1, "a": 2}]}) == record_hash(
        {**base, "matches": [{"a": 2, "b": 1}]})
    assert record_hash({**base, "threshold": 0.1}) != record_hash({**base, "threshold": 0.1001})
    big = 2 ** 63 + 1  # exact: not squeezed through a float, so one unit apart hash apart
    assert record_hash({**base, "details": {"n": big}}) != record_hash(
        {**base, "details": {"n": big + 1}})


@pytest.mark.parametrize("fields", [
    {"threshold": float("nan")}, {"threshold": float("inf")}, {"threshold": 10 ** 400},
    {"matches": [{"Similarity": float("-inf")}]}, {"details": {"x": [float("nan")]}},
    {"org": "\ud800"}, {"faces_found": 2 ** 64}, {"threshold": "ninety"},
])
def test_unencodable_values_are_refused_as_invalid_parameters(home, fields):
    _, _, ledger = home
    with pytest.raises(UnrecordableValue) as caught:
        ledger.append(operation="SearchFaces", decision="allow", **fields)
    assert caught.value.code == "InvalidParameterException" and caught.value.http_status == 400
    assert ledger.head() is None


def _legacy_hash(row: dict) -> str:
    body = {k: v for k, v in row.items() if k != "hash" and v is not None}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


def test_records_hashed_by_the_earlier_encoding_still_verify(home):
    """Ledgers written before the canonical encoding (floats as ``99.0``, and the ``-0.0``
    thresholds that were hashed so but stored as ``0.0``) must keep verifying."""
    data, store, ledger = home
    prev = GENESIS
    with store.write() as conn:
        for seq, threshold in ((1, 99.0), (2, -0.0), (3, 0.1 + 0.2)):
            row = {c: None for c in T.c.keys()}
            row.update(seq=seq, ts="2024-01-01T00:00:00.000000Z", request_id=f"r{seq}",
                       operation="SearchFaces", decision="allow", threshold=threshold,
                       prev_hash=prev)
            row["hash"] = prev = _legacy_hash(row)
            conn.execute(insert(T).values(**row))
    ledger._write_anchor(3, prev)
    ledger.append(operation="SearchFaces", decision="allow", threshold=50.0)
    done = candor("audit", "verify", "--data-dir", data)
    assert done.returncode == 0, done.stdout + done.stderr


def test_verify_reports_every_break(home):
    data, store, ledger = home
    fill(ledger)
    with store.write() as conn:
        conn.execute(update(T).where(T.c.seq == 3).values(org="evil"))
        conn.execute(delete(T).where(T.c.seq == 5))
        conn.execute(update(T).where(T.c.seq == 8).values(threshold=1.0))
    result = ledger.verify()
    assert not result.ok and result.broken_seq == 3 and "edited" in result.problem
    assert [p.seq for p in result.problems] == [3, 6, 8]
    assert "record 5 is missing" in result.problems[1].problem
    assert result.checked == 9 and result.head_seq == 10

    out = cli("audit", "verify", "--json", "--data-dir", data)
    assert out.exit_code == 1
    report = json.loads(out.output)
    assert [p["seq"] for p in report["problems"]] == [3, 6, 8]
    assert report["broken_seq"] == 3 and report["ok"] is False
    text = cli("audit", "verify", "--data-dir", data)
    assert "BROKEN at record 3" in text.output and "record 8:" in text.output


def test_a_recomputed_hash_is_reported_once_and_later_edits_still_found(home):
    _, store, ledger = home
    fill(ledger)
    rec = ledger.search(seq=4)[0]
    rec["threshold"] = 10.0
    with store.write() as conn:
        conn.execute(update(T).where(T.c.seq == 4).values(threshold=10.0,
                                                          hash=record_hash(rec)))
        conn.execute(update(T).where(T.c.seq == 9).values(decision="deny"))
    result = ledger.verify()
    assert [(p.seq, "prev_hash" in p.problem) for p in result.problems] == [(5, True),
                                                                             (9, False)]


def test_a_deleted_anchor_is_a_failure_unless_no_anchor(home):
    data, _, ledger = home
    fill(ledger, 3)
    assert cli("audit", "verify", "--data-dir", data).exit_code == 0
    (data / "ledger.head").unlink()
    out = cli("audit", "verify", "--json", "--data-dir", data)
    assert out.exit_code == 1
    assert "anchor file" in json.loads(out.output)["problem"]
    assert cli("audit", "verify", "--no-anchor", "--data-dir", data).exit_code == 0


def test_a_new_data_dir_verifies(tmp_path):
    out = cli("audit", "verify", "--data-dir", tmp_path / "fresh")
    assert out.exit_code == 0 and "0 records, chain intact" in out.output


def test_an_edited_anchor_is_reported_with_the_rest(home):
    data, store, ledger = home
    fill(ledger, 4)
    (data / "ledger.head").write_text("garbage\n")
    with store.write() as conn:
        conn.execute(update(T).where(T.c.seq == 2).values(org="evil"))
    result = ledger.verify()
    assert [p.seq for p in result.problems] == [2, None]
    assert "unreadable" in result.problems[1].problem
