"""``candor report``, ``candor erase``,
``candor retention show|set|purge`` and ``candor policy check|explain``: the operator's and
the compliance officer's commands, added to ``candor`` by :func:`register` (``candor audit``
is in :mod:`candor.cli.audit`).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from candor.cli.common import (
    DataDirOption,
    JsonOption,
    cli_errors,
    console,
    fail,
    print_json,
    settings,
    working,
)
from candor.clock import day_start, utcnow

retention_app = typer.Typer(help="Per-collection retention periods and purges.",
                            no_args_is_help=True)
policy_app = typer.Typer(help="Check a policy file; see how it decides a call.",
                         no_args_is_help=True)

AsOption = Annotated[str | None, typer.Option(
    "--as", help="The organisation acting (recorded in the ledger) [default: CANDOR_ORG or "
                 "'operator'].")]


def _store(data_dir):
    from candor.store import open_store

    s = settings(data_dir)
    return open_store(s.ensure_data_dir(), s.database_url, s.index_kind)


def _ledger(data_dir):
    from candor.governance.ledger import Ledger

    return Ledger.for_store(_store(data_dir))


def _gate(store, data_dir):
    """The gate that decides erase and retention commands under the settings' policy."""
    from candor.governance.gate import Gate

    return Gate.for_store(store, settings(data_dir))


def _operator(org: str | None):
    from candor.governance.principal import Principal

    s = settings()
    return Principal.local(org or s.org, s.category)


def report(
    date_from: Annotated[str | None, typer.Option(
        "--from", help="First day (YYYY-MM-DD, UTC) [default: the first record].")] = None,
    date_to: Annotated[str | None, typer.Option(
        "--to", help="Last day, inclusive [default: today].")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html, json or csv.")] = "html",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write here instead of stdout.")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Transparency report from the audit ledger, as HTML (with charts), JSON or CSV.

    Calls by organisation, category, operation and month; denials by rule; thresholds;
    searches that returned matches; erasures and purges; and whether the chain verified.
    """
    from candor.governance.report import build_report, render

    if fmt not in ("html", "json", "csv"):
        fail("--format must be html, json or csv")
    with cli_errors():
        try:
            text = render(build_report(_ledger(data_dir), date_from, date_to), fmt)
        except ValueError as exc:
            fail(escape(str(exc)))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")


def erase(
    external_image_id: Annotated[str | None, typer.Option(
        "--external-image-id", help="Erase every face indexed with this ExternalImageId.")]
    = None,
    user_id: Annotated[str | None, typer.Option(
        "--user-id", help="Erase this user and every face associated with it.")] = None,
    collection: Annotated[str | None, typer.Option(
        "--collection", help="Only in this collection [default: every collection].")] = None,
    as_org: AsOption = None,
    data_dir: DataDirOption = None, json_output: JsonOption = False,
) -> None:
    """Erase a person's faces from every collection, with a receipt in the audit ledger.

    For GDPR Art. 17 and BIPA destruction requests: afterwards no search returns them.
    """
    from candor.governance.erasure import erase as do_erase
    from candor.governance.ledger import Ledger

    if (external_image_id is None) == (user_id is None):
        fail("give exactly one of --external-image-id or --user-id")
    if not (external_image_id or user_id or "").strip():
        fail("the --external-image-id or --user-id to erase is empty")
    with cli_errors(), working("erasing"):
        store = _store(data_dir)
        principal = _operator(as_org)
        params = {"ExternalImageId": external_image_id, "UserId": user_id,
                  "CollectionId": collection}
        receipt = _gate(store, data_dir).run_candor(
            principal, "Erase", {k: v for k, v in params.items() if v is not None},
            lambda: do_erase(store, Ledger.for_store(store), external_image_id=external_image_id,
                             user_id=user_id, collection=collection, principal=principal),
            records_itself=True)
    if json_output:
        print_json(receipt.to_dict())
        return
    console.print(f"erased {receipt.face_count} face(s) from "
                  f"{len(receipt.faces)} collection(s)"
                  + (f", user(s) {receipt.users}" if receipt.users else ""))
    console.print(f"receipt: audit record {receipt.record['seq']} ({receipt.record['hash']})",
                  highlight=False)


@retention_app.command("show")
def retention_show(data_dir: DataDirOption = None, json_output: JsonOption = False) -> None:
    """Collections with a retention period."""
    from candor.governance.erasure import retention

    with cli_errors():
        periods = retention(_store(data_dir))
    if json_output:
        print_json(periods)
        return
    if not periods:
        console.print("no collection has a retention period (faces kept until deleted)")
    for coll, days in sorted(periods.items()):
        console.print(f"{coll}: {days} days")


#: the longest retention period ``retention set`` takes
MAX_RETENTION_DAYS = 36500


@retention_app.command("set")
def retention_set(
    collection: Annotated[str, typer.Argument(help="Collection id.")],
    days: Annotated[str, typer.Argument(help="Days to keep each face, or 'none'.")],
    as_org: AsOption = None, data_dir: DataDirOption = None,
) -> None:
    """Keep the collection's faces this many days after indexing ('none': until deleted)."""
    from candor.governance.erasure import set_retention
    from candor.governance.ledger import Ledger

    # ASCII digits only ('²'.isdigit() is true) and at most 100 years (the store's integer)
    if days.lower() != "none" and not (days.isascii() and days.isdigit()
                                       and int(days) <= MAX_RETENTION_DAYS):
        fail(f"days must be a whole number up to {MAX_RETENTION_DAYS} (100 years) or 'none'")
    period = None if days.lower() == "none" else int(days)
    with cli_errors():
        store = _store(data_dir)
        principal = _operator(as_org)
        _gate(store, data_dir).run_candor(
            principal, "SetRetention", {"CollectionId": collection, "RetentionDays": period},
            lambda: set_retention(store, Ledger.for_store(store), collection, period, principal),
            records_itself=True)
    console.print(f"{collection}: retention {days} days" if days.isdigit()
                  else f"{collection}: no retention period")


@retention_app.command("purge")
def retention_purge(as_org: AsOption = None, data_dir: DataDirOption = None,
                    json_output: JsonOption = False) -> None:
    """Delete faces older than their collection's retention period, now."""
    from candor.governance.erasure import purge
    from candor.governance.ledger import Ledger

    with cli_errors():
        store = _store(data_dir)
        principal = _operator(as_org)
        receipts = _gate(store, data_dir).run_candor(
            principal, "Purge", {},
            lambda: purge(store, Ledger.for_store(store), principal=principal))
    if json_output:
        print_json([r.to_dict() for r in receipts])
        return
    if not receipts:
        console.print("nothing to purge")
    for r in receipts:
        console.print(f"purged {r.face_count} face(s) from {', '.join(r.faces)} "
                      f"(audit record {r.record['seq']})")


@policy_app.command("check")
def policy_check(policy: Annotated[str, typer.Argument(
        help="Policy file, or a shipped policy's name.")]) -> None:
    """Validate a policy file: every problem with its line, exit 2 if any."""
    from candor.governance.policy import PolicyError, load_policy, resolve_policy_path

    try:
        p = load_policy(resolve_policy_path(policy))
    except PolicyError as exc:
        for problem in exc.problems:
            console.print(f"[red]error[/red]: {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(f"[green]ok[/green]: {p.name}: {len(p.rules)} rule(s), default {p.default}, "
                  f"audit {p.audit}, sha256 {p.sha256[:12]}", highlight=False)
    for rule in p.rules:
        console.print(f"  line {rule.line}: {rule.id}: {rule.effect}", highlight=False)


def _known_operation(operation: str) -> None:
    """Refuse a name that is not a Rekognition operation: no rule can match it, so the
    policy would answer with its default, which reads like an answer about a real call."""
    from difflib import get_close_matches

    from candor.governance.policy import known_operations

    known = sorted(known_operations())
    if operation in known:
        return
    close = get_close_matches(operation, known, n=3, cutoff=0.6)
    hint = (f"did you mean {' or '.join(close)}?" if close
            else "known operations: " + ", ".join(known))
    fail(escape(f"{operation!r} is not a Rekognition operation; {hint}"))


@policy_app.command("explain")
def policy_explain(
    policy: Annotated[str, typer.Argument(help="Policy file, or a shipped policy's name.")],
    operation: Annotated[str, typer.Argument(help="Operation, e.g. SearchFacesByImage.")],
    org: Annotated[str, typer.Option("--org", help="The caller's organisation.")] = "example",
    category: Annotated[str, typer.Option("--category", help="The caller's category.")]
    = "general",
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Request parameter NAME=VALUE (JSON values), repeatable, e.g. "
                        "FaceMatchThreshold=99 CollectionId='\"c\"'.")] = None,
    authorization_ref: Annotated[str | None, typer.Option("--authorization-ref")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Decide as of this date/time.")]
    = None,
) -> None:
    """How the policy decides one call, without running it (no daily-cap counting)."""
    from candor.governance.policy import (
        PolicyError,
        Request,
        load_policy,
        parse_when,
        resolve_policy_path,
    )
    from candor.governance.principal import Principal

    _known_operation(operation)
    params: dict[str, Any] = {}
    for item in param or []:
        name, sep, raw = item.partition("=")
        if not sep:
            fail(escape(f"--param {item!r}: use NAME=VALUE"))
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    try:
        when = parse_when(at) if at else utcnow()
    except ValueError:
        fail(escape(f"--at: not a date or date-time: {at!r}"))
    if not isinstance(when, datetime):
        when = day_start(when)
    with cli_errors():
        try:
            p = load_policy(resolve_policy_path(policy))
        except PolicyError as exc:
            fail(escape(exc.message))
        decision = p.decide(Request(Principal.local(org, category), operation, params, when,
                                    authorization_ref), usage=lambda *_: 0)
    verdict = "[green]allow[/green]" if decision.allowed else "[red]deny[/red]"
    console.print(f"{verdict} by {decision.rule}"
                  + (f": {decision.message}" if decision.message else ""), highlight=False)
    if decision.constraints:
        console.print(f"constraints: {decision.constraints}", highlight=False)
    if decision.param_overrides:
        console.print(f"parameters set: {decision.param_overrides}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the governance commands to the main ``candor`` command."""
    app.add_typer(retention_app, name="retention")
    app.add_typer(policy_app, name="policy")
    app.command("report")(report)
    app.command("erase")(erase)
