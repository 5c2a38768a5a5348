"""The operator console at ``/console`` on ``candor serve``: server-rendered pages (Jinja,
:func:`candor.templates.render`) for the operator, reviewers and auditors.

One module per page family: :mod:`.auth` (accounts, sessions, CSRF, lockout), :mod:`.web`
(the request guard and the sign-in pages), :mod:`.reviews` (the review queue and verdicts),
:mod:`.pages` (overview, audit log, report, policies), :mod:`.admin` (collections, erasure,
retention, access keys). Every page needs a session; every state-changing form needs the
session's CSRF token; every change is a candor operation run through the gate, so the policy
can refuse it and the ledger records it. See docs/console.md.
"""

from __future__ import annotations

from typing import Any


def mount(app: Any, gateway: Any) -> None:
    """Add the console's routes to ``app`` (before its catch-all route)."""
    from candor.api.console import admin, pages, reviews, web

    console = web.Console(gateway)
    app.state.console = console
    for module in (web, reviews, pages, admin):
        module.routes(app, console)
