"""The review queue and the review page: the probe's face crop, each candidate (with its
face thumbnail when the collection keeps them), and a confirm/reject verdict with a reason
per candidate. A verdict is the candor operation DecideReview (policy-decided, recorded)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from candor.api.console.web import HEADERS, Console
from candor.clock import utcnow
from candor.governance import review as flow

STATUSES = ("PENDING", "DECIDED", "EXPIRED")


def routes(app: Any, console: Console) -> None:
    store = console.store

    @app.get("/console/reviews")
    async def queue(request: Request, status: str = "PENDING") -> Response:
        status = status.upper() if status.upper() in STATUSES else "PENDING"

        def show(session):
            store.expire_reviews(utcnow())
            return console.html("reviews.j2", session, shown=status, statuses=STATUSES,
                                reviews=store.reviews(status))
        return await console.page(request, show)

    @app.get("/console/reviews/{review_id}")
    async def one(request: Request, review_id: str) -> Response:
        def show(session):
            store.expire_reviews(utcnow())
            rv = store.review(review_id)
            if rv is None:
                return console.html("message.j2", session, 404, title="No such review",
                                    message=f"There is no review {review_id}.")
            thumbs = store.thumbnail_ids([c["candidate"] for c in rv["candidates"]])
            return console.html("review.j2", session, review=rv, thumbs=thumbs,
                                csrf=session.csrf)
        return await console.page(request, show)

    @app.get("/console/reviews/{review_id}/probe.jpg")
    async def probe(request: Request, review_id: str) -> Response:
        def send(session):
            data = store.review_probe(review_id)
            if data is None:
                return Response("no probe", status_code=404, headers=HEADERS)
            return Response(data, media_type="image/jpeg", headers=HEADERS)
        return await console.page(request, send)

    @app.post("/console/reviews/{review_id}")
    async def decide(request: Request, review_id: str) -> Response:
        def run(session, form):
            rv = store.review(review_id)
            if rv is None:
                return console.html("message.j2", session, 404, title="No such review",
                                    message=f"There is no review {review_id}.")
            verdicts = {}
            for i, c in enumerate(rv["candidates"]):
                verdicts[c["candidate"]] = (form.get(f"verdict-{i}", ""),
                                            form.get(f"reason-{i}", ""))
            flow.decide(console.gate, store, session.principal, review_id, verdicts)
            return RedirectResponse(f"/console/reviews/{review_id}", status_code=303,
                                    headers=HEADERS)
        return await console.act(request, "decide", "DecideReview", run)
