"""The console's request guard and its sign-in pages.

:meth:`Console.page` runs a page for a signed-in account whose role may see it;
:meth:`Console.act` runs a state-changing form: session, CSRF token and role checked first,
a refusal by role recorded in the ledger. Unauthenticated requests to any page are sent to
the sign-in page; no page renders without a session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from candor.api.console import auth
from candor.clock import utcnow
from candor.config import OPERATOR_ORG
from candor.errors import AccessDenied, CandorError
from candor.templates import FOLDER, render

STATIC = FOLDER / "console"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; "
                               "script-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}
#: who may do what; every signed-in role may read the pages not listed here
MAY = {"decide": ("admin", "reviewer"), "manage": ("admin",), "manage_keys": ("admin",),
       "see_keys": ("admin", "auditor"), "policy": ("admin",)}


class Console:
    """What the console's routes share: the gateway's gate and store."""

    def __init__(self, gateway: Any) -> None:
        from candor.service.common import store_of

        self.gateway = gateway
        self.gate = gateway.gate
        self.store = store_of(gateway.gate.service)

    def html(self, template: str, session: auth.Session | None, status: int = 200,
             **context: Any) -> HTMLResponse:
        body = render(f"console/{template}", session=session, may=_may(session), **context)
        return HTMLResponse(body, status_code=status, headers=HEADERS)

    def refused(self, session: auth.Session, what: str) -> HTMLResponse:
        return self.html("message.j2", session, 403, title="Not allowed",
                         message=f"Your role ({session.role}) may not {what}.")

    async def page(self, request: Request, work: Callable[[auth.Session], Response],
                   need: str | None = None) -> Response:
        """A GET page: signed in (else to the sign-in page) and allowed by role."""
        session = await anyio.to_thread.run_sync(auth.current, self.store, request, utcnow())
        if session is None:
            return RedirectResponse("/console/login", status_code=303, headers=HEADERS)
        if need and session.role not in MAY[need]:
            return self.refused(session, need.replace("_", " "))
        return await anyio.to_thread.run_sync(work, session)

    async def act(self, request: Request, need: str | None, operation: str,
                  work: Callable[[auth.Session, dict[str, str]], Response]) -> Response:
        """A state-changing form: session, CSRF token, role; then ``work`` (which runs its
        change through the gate). A role refusal is recorded as a denied ``operation``."""
        form = await auth.read_form(request)
        session = await anyio.to_thread.run_sync(auth.current, self.store, request, utcnow())
        if session is None:
            return self.html("message.j2", None, 403, title="Signed out",
                             message="Sign in first.")
        if form is None or not auth.same(form.get("csrf"), session.csrf):
            return self.html("message.j2", session, 403, title="Refused",
                             message="This form is stale or did not come from this console "
                                     "(CSRF token missing or wrong). Reload the page.")
        if need and session.role not in MAY[need]:
            await anyio.to_thread.run_sync(self._record_refusal, session, operation)
            return self.refused(session, need)

        def run() -> Response:
            try:
                return work(session, form)
            except AccessDenied as exc:
                return self.html("message.j2", session, 403, title="Refused by the policy",
                                 message=exc.message)
            except CandorError as exc:
                return self.html("message.j2", session, 400, title="Not done",
                                 message=f"{exc.code}: {exc.message}")
        return await anyio.to_thread.run_sync(run)

    def _record_refusal(self, session: auth.Session, operation: str) -> None:
        self.gate.ledger.append(
            ts=utcnow(), request_id=str(uuid.uuid4()), principal=session.principal.name,
            org=OPERATOR_ORG, category="general", operation=operation, decision="deny",
            rule="console-role", details={"role": session.role})


def _may(session: auth.Session | None) -> dict[str, bool]:
    role = session.role if session else None
    return {k: role in v for k, v in MAY.items()}


def routes(app: Any, console: Console) -> None:
    @app.get("/console/login")
    async def login_page(request: Request) -> Response:
        return _login_form(request, console)

    @app.post("/console/login")
    async def login(request: Request) -> Response:
        form = await auth.read_form(request)
        if form is None or not auth.same(form.get("csrf"), request.cookies.get(auth.LOGIN_COOKIE)):
            return console.html("message.j2", None, 403, title="Refused",
                                message="The sign-in form is stale (CSRF token missing or "
                                        "wrong). Reload the page.")
        old = request.cookies.get(auth.COOKIE)
        now = utcnow()

        def check():
            if old:  # whatever session the browser came with ends here (no fixation)
                console.store.end_session(auth.digest(old))
            try:
                return auth.sign_in(console.gate, console.store, form.get("name", ""),
                                    form.get("password", ""), now)
            except AccessDenied as exc:
                return exc.message
        outcome = await anyio.to_thread.run_sync(check)
        if isinstance(outcome, str):
            return _login_form(request, console, error=outcome, status=401)
        token, _ = outcome
        resp = RedirectResponse("/console", status_code=303, headers=HEADERS)
        auth.set_cookie(resp, request, auth.COOKIE, token, auth.SESSION_HOURS * 3600)
        resp.delete_cookie(auth.LOGIN_COOKIE, path="/console", httponly=True, samesite="strict")
        return resp

    @app.post("/console/logout")
    async def logout(request: Request) -> Response:
        def out(session: auth.Session, _form: dict[str, str]) -> Response:
            console.store.end_session(session.token_sha256)
            resp = RedirectResponse("/console/login", status_code=303, headers=HEADERS)
            resp.delete_cookie(auth.COOKIE, path="/console", httponly=True, samesite="strict")
            return resp
        return await console.act(request, None, "ConsoleSignOut", out)

    @app.get("/console/static/{name}")
    async def static(name: str) -> Response:
        types = {"console.css": "text/css", "console.js": "text/javascript"}
        if name not in types:
            return Response("not found", status_code=404, headers=HEADERS)
        return Response(Path(STATIC / name).read_bytes(), media_type=types[name],
                        headers={**HEADERS, "Cache-Control": "max-age=3600"})


def _login_form(request: Request, console: Console, error: str | None = None,
                status: int = 200) -> Response:
    import secrets

    token = secrets.token_urlsafe(32)
    resp = console.html("login.j2", None, status, csrf=token, error=error)
    auth.set_cookie(resp, request, auth.LOGIN_COOKIE, token, 3600)
    return resp
