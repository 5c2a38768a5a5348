"""Signed checkpoints: an operator who rewrites the database and the anchor file together passes
the chain check, but not ``candor audit verify --public-key``. Real store (SQLite file), real
Ed25519 keys, the real ``candor`` CLI and the HTTP gateway's start/stop hook."""

from __future__ import annotations

import json
import stat
from types import SimpleNamespace

import pytest
from postgres_helper import store_url
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from candor.cli import app
from candor.governance.checkpoints import (
    CHECKPOINT_FILE,
    CheckpointTimer,
    SigningKeyError,
    keygen,
    load_private_key,
    load_public_key,
    sign_head,
    verify_signed,
)
from candor.governance.ledger import GENESIS, Ledger, record_hash
from candor.store import open_store
from candor.store.schema import audit_records as T

runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def home(tmp_path):
    data = tmp_path / "data"
    store = open_store(data, store_url())
    ledger = Ledger.for_store(store)
    (tmp_path / "keys").mkdir()
    private, public = keygen(tmp_path / "keys", data)
    return SimpleNamespace(data=data, store=store, ledger=ledger, private=private,
                           public=public, tmp=tmp_path)


def fill(ledger: Ledger, n: int, org: str = "acme") -> None:
    for i in range(n):
        ledger.append(operation="SearchFacesByImage", decision="allow", org=org,
                      collection="c1", threshold=90.0 + i)


def rechain(h, from_seq: int, **changes) -> None:
    """What an operator with write access to the database and the data dir can do: change a
    record, recompute every hash after it consistently, and rewrite the anchor file."""
    with h.store.write() as conn:
        rows = [dict(r) for r in conn.execute(select(T).order_by(T.c.seq)).mappings()]
        prev = GENESIS
        for r in rows:
            if r["seq"] == from_seq:
                r.update(changes)
            if r["seq"] >= from_seq:
                r["prev_hash"] = prev
                r["hash"] = record_hash(r)
                conn.execute(update(T).where(T.c.seq == r["seq"])
                             .values(prev_hash=r["prev_hash"], hash=r["hash"],
                                     **{k: r[k] for k in changes}))
            prev = r["hash"]
    (h.data / "ledger.head").write_text(f"{rows[-1]['seq']:020d} {rows[-1]['hash']}\n")


def test_keygen_writes_a_private_key_only_its_owner_reads(home):
    assert stat.S_IMODE(home.private.stat().st_mode) == 0o600
    assert home.private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert home.public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    out = cli("audit", "keygen", "--out", home.tmp / "k2" / "signer.pem", "--data-dir", home.data)
    assert out.exit_code == 0, out.output
    assert stat.S_IMODE((home.tmp / "k2" / "signer.pem").stat().st_mode) == 0o600
    assert (home.tmp / "k2" / "signer.pem.pub").exists()
    again = cli("audit", "keygen", "--out", home.tmp / "k2" / "signer.pem", "--data-dir", home.data)
    assert again.exit_code == 2 and "exists" in again.output


def test_keygen_refuses_the_data_dir(home):
    out = cli("audit", "keygen", "--out", home.data / "keys.pem", "--data-dir", home.data)
    assert out.exit_code == 2 and "inside the data dir" in out.output
    assert not (home.data / "keys.pem").exists()
    with pytest.raises(SigningKeyError):
        load_private_key(home.private, data_dir=home.tmp)  # the key's dir is inside tmp


def test_rewritten_chain_and_anchor_pass_the_chain_but_not_the_signature(home):
    fill(home.ledger, 6)
    signed = cli("audit", "checkpoint", "--signing-key", home.private, "--json",
                 "--data-dir", home.data)
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.output)["seq"] == 6
    fill(home.ledger, 3)  # 7 is the checkpoint record (of 6); 7-10 are unsigned
    ok = cli("audit", "verify", "--public-key", home.public, "--json", "--data-dir", home.data)
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert report["checkpoint"]["seq"] == 6
    assert any("7-10" in n and "not by a signature" in n for n in report["notes"])

    rechain(home, 2, org="someone-else")
    chain_only = cli("audit", "verify", "--data-dir", home.data)
    assert chain_only.exit_code == 0, chain_only.output  # the limit signatures remove
    out = cli("audit", "verify", "--public-key", home.public, "--json", "--data-dir", home.data)
    assert out.exit_code == 1
    problems = json.loads(out.output)["problems"]
    assert any(p["seq"] == 6 and "rewritten" in p["problem"] for p in problems)


def test_removing_every_checkpoint_is_a_failure(home):
    fill(home.ledger, 4)
    sign_head(home.ledger, load_private_key(home.private))
    with home.store.write() as conn:
        conn.execute(delete(T).where(T.c.operation == "Checkpoint"))
    (home.data / CHECKPOINT_FILE).unlink()
    rechain(home, 1, org="someone-else")  # the checkpoint was the last record: no gap
    assert cli("audit", "verify", "--data-dir", home.data).exit_code == 0
    out = cli("audit", "verify", "--public-key", home.public, "--data-dir", home.data)
    assert out.exit_code == 1 and "no checkpoint signed by key" in out.output


def test_removed_signed_records_are_reported(home):
    fill(home.ledger, 5)
    sign_head(home.ledger, load_private_key(home.private))
    with home.store.write() as conn:  # the newest records, the checkpoint record with them
        conn.execute(delete(T).where(T.c.seq >= 4))
    (home.data / "ledger.head").write_text(
        f"{3:020d} {home.ledger.head()[1]}\n")
    result = verify_signed(home.ledger, home.ledger.verify(), load_public_key(home.public))
    assert not result.ok and "record 5, signed at" in result.problem


def test_a_checkpoint_by_another_key_is_reported(home):
    fill(home.ledger, 3)
    other, _ = keygen(home.tmp / "other.pem", home.data)
    sign_head(home.ledger, load_private_key(home.private))
    fill(home.ledger, 1)
    sign_head(home.ledger, load_private_key(other))
    out = cli("audit", "verify", "--public-key", home.public, "--json", "--data-dir", home.data)
    assert out.exit_code == 1
    report = json.loads(out.output)
    assert report["broken_seq"] == 5 and "not signed by this key" in report["problem"]
    assert report["checkpoint"]["seq"] == 3  # the one that is this key's still counts


def test_a_forged_checkpoint_line_is_reported(home):
    fill(home.ledger, 3)
    cp = sign_head(home.ledger, load_private_key(home.private))
    forged = {**cp.to_dict(), "hash": "f" * 64}
    with open(home.data / CHECKPOINT_FILE, "a") as f:
        f.write(json.dumps(forged) + "\nnot json\n")
    result = verify_signed(home.ledger, home.ledger.verify(), load_public_key(home.public))
    assert [p.seq for p in result.problems] == [3, None]
    assert "not signed by this key" in result.problems[0].problem


def test_an_idle_ledger_is_not_signed_again(home):
    fill(home.ledger, 2)
    key = load_private_key(home.private)
    assert sign_head(home.ledger, key).seq == 2
    assert sign_head(home.ledger, key) is None  # only the checkpoint record since
    fill(home.ledger, 1)
    assert sign_head(home.ledger, key).seq == 4


def test_the_gateway_signs_the_head_when_it_stops(home):
    from candor.api.app import Gateway
    from candor.api.keys import KeyStore

    fill(home.ledger, 3)
    from candor.governance.gate import Gate

    gateway = Gateway(SimpleNamespace(), KeyStore.open(home.data, store_url()), workers=1,
                      gate=Gate(SimpleNamespace(), home.ledger))
    gateway.checkpointer = CheckpointTimer(home.ledger, load_private_key(home.private), 0)
    gateway.start()
    gateway.close()
    lines = (home.data / CHECKPOINT_FILE).read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [3]
    result = verify_signed(home.ledger, home.ledger.verify(), load_public_key(home.public))
    assert result.ok and result.checkpoint["seq"] == 3


def test_serve_refuses_a_signing_key_inside_the_data_dir(home):
    inside = home.data / "k.pem"
    inside.write_bytes(home.private.read_bytes())
    out = cli("serve", "--signing-key", inside, "--data-dir", home.data, "--port", "0")
    assert out.exit_code == 2 and "inside the data dir" in out.output


def test_candor_serve_signs_the_head_on_stop(home):
    """The real server in its own process: started with --signing-key, stopped with SIGTERM."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    fill(home.ledger, 3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", "from candor.cli import main; main()", "serve", "--port",
         str(port), "--data-dir", str(home.data), "--signing-key", str(home.private),
         "--checkpoint-interval", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.25)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    # the three records, then the server's start (the policy in force), then the checkpoint
    # signed on stop, which signs the head before it
    ops = [r["operation"] for r in home.ledger.tail(10)]
    assert ops[-2:] == ["ReloadPolicy", "Checkpoint"], ops
    lines = (home.data / CHECKPOINT_FILE).read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [4]
    out = cli("audit", "verify", "--public-key", home.public, "--data-dir", home.data)
    assert out.exit_code == 0 and "last signed checkpoint: record 4" in out.output, out.output


def test_hostile_checkpoint_lines_are_findings_not_crashes(home):
    fill(home.ledger, 2)
    sign_head(home.ledger, load_private_key(home.private))
    good = json.loads((home.data / CHECKPOINT_FILE).read_text())
    hostile = ["[" * 100_000 + "]" * 100_000, json.dumps({**good, "seq": "3"}),
               json.dumps({**good, "sig": "!!"}), json.dumps({**good, "sig": "AAAA"}),
               "\xff\xfe", json.dumps([1, 2])]
    with open(home.data / CHECKPOINT_FILE, "a") as f:
        f.write("\n".join(hostile) + "\n")
    out = cli("audit", "verify", "--public-key", home.public, "--json", "--data-dir", home.data)
    assert out.exit_code == 1, out.output
    report = json.loads(out.output)
    assert report["checkpoint"]["seq"] == 2 and len(report["problems"]) == 6
