"""``candor audit verify|tail|search|keygen|checkpoint``: read the tamper-evident audit ledger,
prove it whole, and sign its head. Added to ``candor`` by :func:`register`.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from candor.cli.common import (
    DataDirOption,
    JsonOption,
    cli_errors,
    console,
    fail,
    id_column,
    print_json,
    print_table,
    settings,
)
from candor.clock import day_start, iso

audit_app = typer.Typer(help="The tamper-evident audit ledger: verify it, read it, sign its head.",
                        no_args_is_help=True)

SigningKeyOption = Annotated[Path | None, typer.Option(
    "--signing-key",
    help="Ed25519 private key (PEM, from `candor audit keygen`), kept outside the data dir "
         "(also CANDOR_SIGNING_KEY).")]


def _data_dir(data_dir: Path | None) -> Path:
    return settings(data_dir).ensure_data_dir()


def _ledger(data_dir: Path | None):
    from candor.governance.ledger import Ledger
    from candor.store import open_store

    s = settings(data_dir)
    return Ledger.for_store(open_store(s.ensure_data_dir(), s.database_url, s.index_kind))


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDirOption = None,
    anchor: Annotated[str | None, typer.Option(
        "--anchor", help="A head published earlier, as SEQ:HASH, to check the chain against "
                         "[default: the data dir's ledger.head].")] = None,
    no_anchor: Annotated[bool, typer.Option(
        "--no-anchor", help="Check the chain alone: a missing anchor file is not a failure.")]
    = False,
    public_key: Annotated[Path | None, typer.Option(
        "--public-key",
        help="Ed25519 public key (PEM; also CANDOR_LEDGER_PUBLIC_KEY): also prove, from the "
             "signed checkpoints, that no record up to the last one was changed, removed or "
             "re-chained.")] = None,
    checkpoints: Annotated[list[Path] | None, typer.Option(
        "--checkpoints", help="Checkpoint file(s) to check, e.g. a copy kept off this host "
                              "[default: the data dir's ledger.checkpoints].")] = None,
    node_anchors: Annotated[list[Path] | None, typer.Option(
        "--node-anchor", help="Another node's ledger.head (a copy from its data dir), to check "
                              "the shared chain against as well; repeat it for every node.")]
    = None,
    json_output: JsonOption = False,
) -> None:
    """Walk the hash chain and report every problem. Exit 1 if anything is broken."""
    if anchor and no_anchor:
        fail("give --anchor or --no-anchor, not both")
    given = None
    if anchor:
        seq, _, digest = anchor.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            fail("--anchor must look like 1234:<64 hex digits>")
        given = (int(seq), digest)
    with cli_errors():
        ledger = _ledger(data_dir)
        try:
            result = ledger.verify(anchor=given, require_anchor=not no_anchor)
        except ValueError as exc:
            fail(escape(str(exc)))
        if node_anchors:
            result = _check_node_anchors(ledger, result, node_anchors)
        public_key = public_key or settings(data_dir).ledger_public_key
        if public_key is not None:
            from candor.governance.checkpoints import load_public_key, verify_signed

            result = verify_signed(ledger, result, load_public_key(public_key),
                                   files=checkpoints or None)
    if json_output:
        print_json(result.to_dict())
    else:
        _print_verify(result, public_key is not None)
    if not result.ok:
        raise typer.Exit(1)


def _check_node_anchors(ledger, result, paths: list[Path]):
    """``result`` with a problem for every node anchor whose record the chain no longer holds
    as anchored: each node of a shared database anchors the head it last wrote in its own data
    dir, so deleting the newest records is caught only against the anchor of the node that
    wrote them."""
    from sqlalchemy import select

    from candor.governance.ledger import Break, Ledger, VerifyResult

    problems = list(result.problems)
    t = ledger.table
    for path in paths:
        try:
            anchored = Ledger(ledger.engine, anchor_path=path).read_anchor()
        except (OSError, ValueError) as exc:
            problems.append(Break(None, f"node anchor {path}: {exc}"))
            continue
        if anchored is None:
            problems.append(Break(None, f"node anchor {path} does not exist"))
            continue
        seq, digest = anchored
        with ledger.engine.connect() as conn:
            stored = conn.execute(select(t.c.hash).where(t.c.seq == seq)).scalar()
        if stored is None:
            problems.append(Break(seq, f"node anchor {path} records record {seq}, which is "
                                       "gone: newest records deleted"))
        elif stored != digest:
            problems.append(Break(seq, f"it differs from node anchor {path}: the chain was "
                                       "rewritten"))
    return VerifyResult.of(result.checked, result.head_seq, result.head_hash, problems,
                           result.notes, result.checkpoint)


def _print_verify(result, signed: bool) -> None:
    if result.ok:
        console.print(f"[green]ok[/green]: {result.checked} records, chain intact")
    else:
        where = f" at record {result.broken_seq}" if result.broken_seq is not None else ""
        console.print(f"[red]BROKEN[/red]{where}: {escape(result.problem)}", highlight=False,
                      soft_wrap=True)
        if len(result.problems) > 1:
            console.print(f"{len(result.problems)} problems in {result.checked} records:")
            for p in result.problems:
                at = f"record {p.seq}" if p.seq is not None else "ledger"
                console.print(f"  {at}: {escape(p.problem)}", highlight=False, soft_wrap=True)
    console.print(f"head: {result.head_seq}:{result.head_hash}", highlight=False)
    if result.checkpoint:
        cp = result.checkpoint
        console.print(f"last signed checkpoint: record {cp['seq']} at {cp['ts']} "
                      f"(key {cp['key_id']})", highlight=False)
    elif not signed:
        console.print("no --public-key: nothing signed was checked (a chain rewritten together "
                      "with its anchor would pass)")
    for note in result.notes:
        console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)


@audit_app.command("keygen")
def audit_keygen(
    out: Annotated[Path, typer.Option(
        "--out", help="Directory for ledger-signing.key and ledger-signing.pub, or the private "
                      "key's path (the public key gets .pub). Not inside the data dir.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing keys.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Make an Ed25519 key pair for signing ledger checkpoints (private key mode 0600)."""
    from candor.governance.checkpoints import key_id, keygen, load_public_key

    with cli_errors():
        private, public = keygen(out, _data_dir(data_dir), force=force)
        kid = key_id(load_public_key(public))
    console.print(f"private key: {private} (keep it secret, outside the data dir)",
                  highlight=False)
    console.print(f"public key:  {public} (key id {kid}; give it to auditors)", highlight=False)


@audit_app.command("checkpoint")
def audit_checkpoint(signing_key: SigningKeyOption = None, data_dir: DataDirOption = None,
                     json_output: JsonOption = False) -> None:
    """Sign the chain's head now (for installs without `candor serve --signing-key`)."""
    from candor.governance.checkpoints import load_private_key, sign_head

    signing_key = signing_key or settings(data_dir).signing_key
    if signing_key is None:
        fail("give --signing-key (or CANDOR_SIGNING_KEY)")
    with cli_errors():
        key = load_private_key(signing_key, _data_dir(data_dir))
        cp = sign_head(_ledger(data_dir), key, force=True)
    if json_output:
        print_json(cp.to_dict() if cp else None)
    elif cp is None:
        console.print("the ledger is empty: nothing to sign")
    else:
        console.print(f"signed record {cp.seq} ({cp.hash}) at {cp.ts} with key {cp.key_id}",
                      highlight=False)


#: columns whose values a later command needs whole (``audit search --since``, ``--org``...)
_ID_COLUMNS = ("seq", "time (UTC)", "org", "collection")


def _records_table(records: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for col in ("seq", "time (UTC)", "org", "category", "operation", "collection", "threshold",
                "faces", "matches", "decision", "rule"):
        justify = "right" if col in ("seq", "threshold", "faces", "matches") else "left"
        if col in _ID_COLUMNS:
            id_column(table, col, justify=justify)
        else:
            table.add_column(col, justify=justify)
    colour = {"allow": "green", "deny": "red", "failed": "yellow"}
    for r in records:
        d = r["decision"]
        table.add_row(str(r["seq"]), r["ts"], r.get("org") or "",
                      r.get("category") or "", r["operation"], r.get("collection") or "",
                      "" if r.get("threshold") is None else f"{r['threshold']:g}",
                      "" if r.get("faces_found") is None else str(r["faces_found"]),
                      "" if r.get("matches") is None else str(len(r["matches"])),
                      f"[{colour.get(d, 'cyan')}]{d}[/]", r.get("rule") or "")
    return table


def _print_records(records: list[dict[str, Any]], title: str, json_output: bool) -> None:
    if json_output:
        for r in records:
            sys.stdout.write(json.dumps(r, sort_keys=True) + "\n")
    else:
        print_table(_records_table(records, title))


@audit_app.command("tail")
def audit_tail(n: Annotated[int, typer.Option("-n", "--lines", min=1, max=1_000_000,
                                              help="How many records.")] = 20,
               data_dir: DataDirOption = None, json_output: JsonOption = False) -> None:
    """The newest records (JSON lines with --json)."""
    with cli_errors():
        records = _ledger(data_dir).tail(n)
    _print_records(records, f"last {len(records)} audit record(s)", json_output)


def _when(value: str | None) -> str | None:
    from candor.governance.policy import parse_when

    if value is None:
        return None
    try:
        at = parse_when(value)
    except ValueError:
        fail(escape(f"not a date or date-time: {value!r}"))
    return iso(at if isinstance(at, datetime) else day_start(at))


@audit_app.command("search")
def audit_search(
    org: Annotated[str | None, typer.Option(help="Organisation.")] = None,
    category: Annotated[str | None, typer.Option(help="Use-case category.")] = None,
    principal: Annotated[str | None, typer.Option(help="Access key id or local name.")] = None,
    operation: Annotated[str | None, typer.Option(help="Operation, e.g. SearchFaces.")] = None,
    collection: Annotated[str | None, typer.Option(help="Collection id.")] = None,
    decision: Annotated[str | None, typer.Option(
        help="allow, deny, failed, erasure, purge or checkpoint.")] = None,
    rule: Annotated[str | None, typer.Option(help="The deciding rule's id.")] = None,
    request_id: Annotated[str | None, typer.Option(help="A request id.")] = None,
    since: Annotated[str | None, typer.Option(help="From this date/time (UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date/time (UTC).")] = None,
    image_sha256: Annotated[str | None, typer.Option(
        help="Records whose input images include this SHA-256.")] = None,
    face_id: Annotated[str | None, typer.Option(
        help="Records whose matches include this FaceId or UserId.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000,
                                       help="At most this many, oldest first.")] = 100,
    data_dir: DataDirOption = None, json_output: JsonOption = False,
) -> None:
    """Records matching every filter given."""
    with cli_errors():
        records = _ledger(data_dir).search(
            limit=limit, org=org, category=category, principal=principal, operation=operation,
            collection=collection, decision=decision, rule=rule, request_id=request_id,
            since=_when(since), until=_when(until), image_sha256=image_sha256, face_id=face_id)
    _print_records(records, f"{len(records)} matching audit record(s)", json_output)


def register(app: typer.Typer) -> None:
    """Add ``candor audit`` to the main ``candor`` command."""
    app.add_typer(audit_app, name="audit")
