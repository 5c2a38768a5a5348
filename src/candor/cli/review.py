"""``candor review list|show|decide|result``: calls a policy held for human review.

``list`` and ``show`` are the reviewer's view of the queue (every organisation's reviews, as
in the console); ``decide`` records a reviewer's verdicts (the candor operation DecideReview,
decided by the policy and written to the ledger, acting as ``--as ORG``); ``result`` is
``GetReviewResult`` as the asking organisation reads it (only confirmed matches).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from candor.cli.common import (
    DataDirOption,
    JsonOption,
    call,
    cli_errors,
    console,
    fail,
    make_service,
    print_json,
    print_table,
    settings,
)

review_app = typer.Typer(help="Calls held for human review: the queue, verdicts, results.",
                         no_args_is_help=True)
STATUSES = ("pending", "decided", "expired", "all")


def _store(data_dir):
    from candor.store import open_store

    s = settings(data_dir)
    return open_store(s.ensure_data_dir(), s.database_url, s.index_kind)


def _fresh(store) -> None:
    from candor.clock import utcnow

    store.expire_reviews(utcnow())


@review_app.command("list")
def list_reviews(
    status: Annotated[str, typer.Option(help="pending, decided, expired or all.")] = "pending",
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """The reviews, newest first (every organisation's: this is the reviewer's queue)."""
    if status not in STATUSES:
        fail(f"--status must be one of {', '.join(STATUSES)}")
    store = _store(data_dir)
    _fresh(store)
    rows = store.reviews(None if status == "all" else status.upper())
    if as_json:
        print_json(rows)
        return
    table = Table("review", "status", "org", "operation", "collection", "candidates", "asked",
                  "expires")
    for r in rows:
        table.add_row(r["review_id"], r["status"], escape(r["org"]), r["operation"],
                      escape(r["collection_id"] or "-"), str(r["candidate_count"]),
                      f"{r['created_at']:%Y-%m-%d %H:%M}", f"{r['expires_at']:%Y-%m-%d %H:%M}")
    print_table(table)


@review_app.command("show")
def show(
    review_id: Annotated[str, typer.Argument(help="The review id (rv-...).")],
    probe: Annotated[Path | None, typer.Option(
        help="Write the probe's face crop (JPEG) here, while the review is pending.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """One review: who asked, when, under which authorisation, and each candidate."""
    store = _store(data_dir)
    _fresh(store)
    review = store.review(review_id)
    if review is None:
        fail(f"no review {escape(review_id)!r}")
    if probe is not None:
        data = store.review_probe(review_id)
        if data is None:
            fail("this review has no probe crop (decided, expired, or the call took no image)")
        probe.write_bytes(data)
    if as_json:
        print_json(review)
        return
    for key in ("review_id", "status", "org", "principal", "category", "operation",
                "collection_id", "authorization_reference", "threshold", "rule", "created_at",
                "expires_at", "decided_at", "decided_by"):
        console.print(f"{key}: {escape(str(review.get(key)))}", highlight=False)
    table = Table("candidate", "similarity", "verdict", "reason")
    for c in review["candidates"]:
        sim = c["similarity"]
        table.add_row(escape(c["candidate"]), "-" if sim is None else f"{sim:.2f}",
                      c["verdict"] or "-", escape(c["reason"] or ""))
    print_table(table)


@review_app.command("decide")
def decide(
    review_id: Annotated[str, typer.Argument(help="The review id (rv-...).")],
    confirm: Annotated[list[str] | None, typer.Option(
        "--confirm", help="A candidate (FaceId, UserId or match-N) a person confirmed; "
                          "repeatable.")] = None,
    reject: Annotated[list[str] | None, typer.Option(
        "--reject", help="A candidate rejected; repeatable.")] = None,
    reject_others: Annotated[bool, typer.Option(
        "--reject-others", help="Reject every candidate not named by --confirm.")] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded with every verdict).")] = "",
    data_dir: DataDirOption = None,
) -> None:
    """Record a reviewer's verdict on every candidate of a pending review (DecideReview, in
    the ledger); only confirmed candidates are ever released by GetReviewResult."""
    from candor.governance import review as flow
    from candor.governance.gate import Gate, local_principal

    store = _store(data_dir)
    s = settings(data_dir)
    with cli_errors():
        current = store.review(review_id)
        if current is None:
            fail(f"no review {escape(review_id)!r}")
        verdicts = {c: ("confirm", reason) for c in confirm or []}
        verdicts.update({c: ("reject", reason) for c in reject or []})
        if reject_others:
            for c in current["candidates"]:
                verdicts.setdefault(c["candidate"], ("reject", reason))
        decided = flow.decide(Gate.for_store(store, s), store, local_principal(s), review_id,
                              verdicts)
    confirmed = [c["candidate"] for c in decided["candidates"] if c["verdict"] == "CONFIRMED"]
    console.print(f"review {decided['review_id']} decided: {len(confirmed)} confirmed, "
                  f"{len(decided['candidates']) - len(confirmed)} rejected", highlight=False)


@review_app.command("result")
def result(
    review_id: Annotated[str, typer.Argument(help="The review id (rv-...).")],
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """GetReviewResult as the asking organisation (``--as ORG``) reads it: the status and
    the confirmed matches only."""
    resp = call(make_service(data_dir), "GetReviewResult", {"ReviewId": review_id})
    if as_json:
        print_json(resp)
        return
    console.print(f"{resp['ReviewId']}: {resp['Status']}", highlight=False)
    for key in ("FaceMatches", "UserMatches", "CompareMatches"):
        for m in resp.get(key) or []:
            who = (m.get("Face") or {}).get("FaceId") or (m.get("User") or {}).get("UserId") or "-"
            console.print(f"  {who}  {m.get('Similarity', 0):.2f}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``candor review`` to the main command."""
    app.add_typer(review_app, name="review")
