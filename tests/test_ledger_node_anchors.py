"""``candor audit verify --node-anchor``: on a database shared by several nodes each node anchors
the head it last wrote in its own data dir, so deleting the newest records (written by node B)
is caught from node A's data dir only when B's anchor is checked too."""

from __future__ import annotations

import shutil

from postgres_helper import store_url
from sqlalchemy import delete
from typer.testing import CliRunner

from candor.cli import app
from candor.governance.ledger import ANCHOR_FILE, Ledger
from candor.store import open_store
from candor.store.schema import audit_records as T

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def append(ledger: Ledger, n: int) -> None:
    for _ in range(n):
        ledger.append(operation="DetectFaces", org="acme", category="general", decision="allow")


def test_every_nodes_anchor_is_checked(tmp_path):
    data = tmp_path / "a"
    store = open_store(data, url=store_url())
    node_a = Ledger.for_store(store)
    append(node_a, 3)  # node A wrote records 1-3: its anchor names 3
    node_b = Ledger(store.engine, writer=store.writer, anchor_path=tmp_path / "b.head")
    append(node_b, 2)  # node B, on the same database, wrote 4-5: its anchor names 5
    node_b.close()
    assert run("audit", "verify", "--data-dir", data, "--node-anchor",
               tmp_path / "b.head").exit_code == 0

    with store.write() as conn:  # B's records deleted: A's anchor (3) still holds
        conn.execute(delete(T).where(T.c.seq >= 4))
    alone = run("audit", "verify", "--data-dir", data)
    assert alone.exit_code == 0  # what verify from A's data dir alone cannot see
    both = run("audit", "verify", "--data-dir", data, "--node-anchor", tmp_path / "b.head")
    assert both.exit_code == 1 and "BROKEN at record 5" in both.output
    assert "newest records deleted" in both.output

    shutil.copy(data / ANCHOR_FILE, tmp_path / "a.head")
    missing = run("audit", "verify", "--data-dir", data, "--node-anchor", tmp_path / "a.head",
                  "--node-anchor", tmp_path / "nowhere.head")
    assert missing.exit_code == 1 and "does not exist" in missing.output
