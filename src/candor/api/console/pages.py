"""The reading pages: overview (the ledger verified and its head, calls and denials today,
reviews waiting), the audit log with filters and a verification, the transparency report
(:mod:`candor.governance.report`), and policies: the one in force, a draft checked with
line-numbered errors, and its activation (the candor operation ActivatePolicy, recorded; the
new file is then adopted by the gate's ReloadPolicy, decided by the policy in force)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from candor.api.console.web import HEADERS, Console
from candor.clock import day_start, utcnow
from candor.errors import InvalidParameter
from candor.governance.policy import PolicyError, parse_policy, shipped_policy_path
from candor.store.reviews import PENDING

AUDIT_FILTERS = ("org", "operation", "decision", "principal", "collection", "face_id")
AUDIT_ROWS = 200
REPORT_HEADERS = {**HEADERS, "Content-Security-Policy":
                  "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                  "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"}


def routes(app: Any, console: Console) -> None:
    gate, store = console.gate, console.store

    @app.get("/console")
    async def overview(request: Request) -> Response:
        def show(session):
            store.expire_reviews(utcnow())
            since = day_start(utcnow())
            return console.html(
                "overview.j2", session, verification=gate.ledger.verify(),
                head=gate.ledger.head(), calls=gate.ledger.count(since=since),
                denials=gate.ledger.count(since=since, decision="deny"),
                waiting=store.count_reviews(PENDING), policy=gate.policy)
        return await console.page(request, show)

    @app.get("/console/audit")
    async def audit(request: Request) -> Response:
        q = request.query_params
        filters = {k: q[k].strip() for k in AUDIT_FILTERS if q.get(k, "").strip()}
        for key in ("since", "until"):
            if q.get(key, "").strip():
                filters[key] = q[key].strip()[:32]

        def show(session):
            records = (gate.ledger.search(limit=AUDIT_ROWS, **filters) if filters
                       else list(reversed(gate.ledger.tail(AUDIT_ROWS))))
            verified = gate.ledger.verify() if q.get("verify") else None
            return console.html("audit.j2", session, records=records, filters=filters,
                                names=AUDIT_FILTERS, verified=verified, limit=AUDIT_ROWS)
        return await console.page(request, show)

    @app.get("/console/report")
    async def report(request: Request) -> Response:
        from candor.governance.report import build_report, to_html

        start, end = request.query_params.get("from"), request.query_params.get("to")

        def show(session):
            try:
                rep = build_report(gate.ledger, start or None, end or None)
            except (ValueError, InvalidParameter) as exc:
                return console.html("message.j2", session, 400, title="Report",
                                    message=str(exc))
            return HTMLResponse(to_html(rep), headers=REPORT_HEADERS)
        return await console.page(request, show)

    @app.get("/console/policies")
    async def policies(request: Request) -> Response:
        def show(session):
            return _policy_page(console, session)
        return await console.page(request, show)

    @app.post("/console/policies/check")
    async def check(request: Request) -> Response:
        def run(session, form):
            return _policy_page(console, session, draft=form.get("draft", ""), checked=True)
        return await console.act(request, None, "CheckPolicy", run)

    @app.post("/console/policies/activate")
    async def activate(request: Request) -> Response:
        def run(session, form):
            draft = form.get("draft", "")
            try:
                new = parse_policy(draft, "<draft>")
            except PolicyError as exc:
                return _policy_page(console, session, draft=draft, checked=True,
                                    errors=exc.problems, status=400)
            path = _policy_file(gate)
            if path is None:
                raise InvalidParameter("the server runs a shipped policy; start candor serve "
                                       "with --policy FILE to activate policies here")
            gate.run_candor(session.principal, "ActivatePolicy",
                            {"Policy": new.name, "Sha256": new.sha256, "Source": str(path)},
                            lambda: _write(path, draft))
            now = gate.policy  # the gate adopts it now: ReloadPolicy, decided and recorded
            return _policy_page(console, session, activated=now.sha256 == new.sha256)
        return await console.act(request, "policy", "ActivatePolicy", run)


def _policy_file(gate: Any) -> Path | None:
    """The file the server's policy comes from, unless it is one of candor's shipped ones."""
    store = getattr(gate, "_policy", None)
    path = getattr(store, "path", None)
    if path is None:
        return None
    path = Path(path).resolve()
    try:
        if path == shipped_policy_path(path.stem).resolve():
            return None
    except Exception:
        pass
    return path


def _write(path: Path, text: str) -> None:
    """Replace the policy file atomically (a reader sees the old file or the new one)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".policy-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _policy_page(console: Console, session, draft: str | None = None, checked: bool = False,
                 errors: list | None = None, status: int = 200, activated: bool | None = None):
    policy = console.gate.policy
    try:
        text = Path(policy.source).read_text(encoding="utf-8")
    except (OSError, TypeError):
        text = None
    if checked and errors is None and draft is not None:
        try:
            parse_policy(draft, "<draft>")
            errors = []
        except PolicyError as exc:
            errors = exc.problems
    return console.html("policies.j2", session, status, policy=policy, text=text,
                        draft=draft if draft is not None else (text or ""), checked=checked,
                        errors=[str(e) for e in errors or []], csrf=session.csrf,
                        activated=activated, file=_policy_file(console.gate))
