"""What every HTTP request goes through before an operation sees it: a request id on every
response, whatever route produced it, a body read under a cap (refused as soon as it is
known to exceed it, never buffered past it), and the short way in for ``POST /``."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from candor.errors import CandorError, InvalidParameter, Throttling


class RequestIdMiddleware:
    """Give every response, whatever route produced it, an ``x-amzn-RequestId`` header."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-amzn-requestid" for k, _ in headers):
                    headers.append((b"x-amzn-requestid", request_id.encode()))
                message = dict(message, headers=headers)
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyBudget:
    """The bytes of request bodies held in memory (being received, queued or run), bounded:
    a request whose next chunk would pass ``limit`` is throttled. Requests still receiving
    their bodies are bounded by this, not by their number, so clients that open connections
    and send their bodies slowly or never (slowloris) hold nothing and block no one."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self, n: int) -> None:
        if self.used + n > self.limit:
            raise Throttling(f"Request bodies being received exceed {self.limit >> 20} MB; "
                             "slow down and retry")
        self.used += n  # the event loop is single-threaded: no lock needed

    def release(self, n: int) -> None:
        self.used -= n


async def read_body(request: Request, limit: int, too_large: type[CandorError],
                    budget: BodyBudget | None = None) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` (never buffered past it);
    its bytes are taken from ``budget`` (the caller releases ``len(body)`` when done)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidParameter("Content-Length is not a number") from None
        if size > limit:
            raise too_large(f"Request body of {size} bytes exceeds the limit of {limit} bytes "
                            "for this operation (image bytes are limited to 5 MB)")
    buf = bytearray()
    try:
        async for chunk in request.stream():
            if budget is not None:
                budget.take(len(chunk))
            buf += chunk
            if len(buf) > limit:
                raise too_large(f"Request body exceeds the limit of {limit} bytes for this "
                                "operation (image bytes are limited to 5 MB)")
    except BaseException as exc:  # whatever ends the read (a cancellation too) gives back its bytes
        if budget is not None:
            budget.release(len(buf))
        if isinstance(exc, ClientDisconnect):
            raise InvalidParameter("the client disconnected before the body was complete") \
                from None
        raise
    return bytes(buf)


class DirectApp(FastAPI):
    """FastAPI, with ``POST /`` (every Rekognition operation) handed straight to
    :attr:`rekognition`: the middleware stack, the router and the endpoint machinery (about a
    third of the event loop's time under 8 IndexFaces clients, all of it holding the GIL the
    engine's threads need) do nothing for a route whose handler reads its own body, catches its
    own errors and sets its own request id. Every other request, and the lifespan, goes
    through FastAPI as before."""

    #: ``await rekognition(request)`` answers a ``POST /``; it must not raise
    rekognition: Callable[[Request], Awaitable[Response]] | None = None

    async def __call__(self, scope, receive, send) -> None:
        if (self.rekognition is not None and scope["type"] == "http"
                and scope["method"] == "POST" and scope["path"] == "/"):
            scope["app"] = self
            scope.setdefault("state", {})["request_id"] = str(uuid.uuid4())
            response = await self.rekognition(Request(scope, receive))
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
