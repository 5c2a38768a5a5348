"""The HTTP door: Amazon Rekognition's AWS JSON 1.1 protocol over the service layer.

``POST /`` with ``X-Amz-Target: RekognitionService.<Operation>``: the body is read under a cap
sized for the operation (refused before it is read whole), the SigV4 signature is verified,
the JSON is checked against botocore's model, and the operation runs on a pool of worker
threads (dlib and onnxruntime release the GIL, so threads use every core while the event loop
stays free). :meth:`Gateway.invoke` is the one place where the authenticated principal meets
the service, so governance wraps exactly that call.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from candor.api import protocol, sigv4
from candor.api.batching import announced, attach_batcher, share_commits
from candor.api.keys import ActiveKey, KeyStore
from candor.api.replay import SeenSignatures
from candor.api.s3 import S3Images
from candor.api.transport import BodyBudget, DirectApp, RequestIdMiddleware, read_body  # noqa: F401
from candor.errors import (  # noqa: F401  (InternalServerError, Throttling re-exported)
    CandorError,
    ImageTooLarge,
    InternalServerError,
    InvalidParameter,
    InvalidSignature,
    Throttling,
    UnknownOperation,
)
from candor.governance.gate import Gate
from candor.governance.review import REVIEW_HEADER
from candor.service import operations
from candor.system import available_cores

log = logging.getLogger("candor.api")

#: 5 MB of image bytes is this many base64 characters
IMAGE_BASE64_CHARS = 4 * math.ceil(5 * 1024 * 1024 / 3)
#: room for everything in a request that is not image bytes
BODY_SLACK = 256 * 1024
REQUEST_ID_HEADER = "x-amzn-RequestId"
#: the reference of an authorisation (warrant, court order) a policy may require; see policies.md
AUTHORIZATION_REFERENCE_HEADER = "x-candor-authorization-reference"


#: methods answered with UnknownOperationException on any path FastAPI has no route for
OTHER_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def body_limit(images: int) -> int:
    """The largest body an operation carrying ``images`` images may send."""
    return images * IMAGE_BASE64_CHARS + BODY_SLACK


class Gateway:
    """What a request needs once it is past HTTP: keys, the service, the worker pool, metrics."""

    def __init__(self, service, keys: KeyStore, workers: int | None = None, *, gate: Gate,
                 s3_endpoint_url: str | None = None, retention_interval: float = 0) -> None:
        if not isinstance(gate, Gate):  # no ungoverned door: there is no gate=None mode
            raise TypeError("Gateway needs a governance gate (candor.governance.gate.Gate); "
                            f"got {type(gate).__name__}")
        self.service = service
        self.keys = keys
        #: signatures of mutating requests already accepted (replay protection)
        self.seen = SeenSignatures(keys.store)
        settings = getattr(service, "settings", None)
        from candor.face.video import parse_buckets

        self.s3 = S3Images(s3_endpoint_url, settings.aws_region if settings else "us-east-1",
                           parse_buckets(settings.buckets) if settings else None)
        if settings is not None:
            service.__dict__["media"] = self.s3  # video jobs download S3 objects through it
        #: the video job runner (candor.service.jobs), started and stopped with the server
        self.jobs = None
        self.retention_interval = retention_interval
        self.retention_timer = None
        #: signs the ledger's head at an interval and once more on close, after the last
        #: request is recorded (a CheckpointTimer from candor.governance.checkpoints), or None
        self.checkpointer = None
        #: governance: ``gate.invoke(principal, operation, params, request_id)`` decides,
        #: runs and records each call (see :mod:`candor.governance.gate`)
        self.gate = gate
        self.workers = max(1, workers or default_workers())
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="candor-op")
        self.registry = CollectorRegistry()
        #: concurrent requests' face chips embedded together (candor.face.batcher)
        self.batcher = attach_batcher(service, self.registry)
        share_commits(service, keys, gate, self.registry)  # one fsync for concurrent writes
        self.requests = Counter("candor_http_requests", "Requests by operation and HTTP status",
                                ["operation", "status"], registry=self.registry)
        self.errors = Counter("candor_http_errors", "Error responses by operation and error code",
                              ["operation", "code"], registry=self.registry)
        #: requests queued or running; past ``max_pending`` more are throttled (bodies: below)
        self.pending = 0
        self.max_pending = max(64, 16 * self.workers)
        self.bodies = BodyBudget(self.max_pending * body_limit(1))  # a slow sender holds none
        self.in_flight = Gauge("candor_http_in_flight", "Requests being read, queued or run",
                               registry=self.registry)
        self.latency = Histogram(
            "candor_http_request_duration_seconds", "Request latency by operation",
            ["operation"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))

    def authenticate(self, request: Request, body: bytes) -> tuple[sigv4.Verified, ActiveKey]:
        """Verify the SigV4 signature; the key record comes back with the proof."""
        found: dict[str, ActiveKey] = {}

        def secret_for(key_id: str) -> str | None:
            key = self.keys.lookup(key_id)
            if key is None:
                return None
            found["key"] = key
            return key.secret

        headers = [(k.decode("latin-1"), v.decode("latin-1"))
                   for k, v in request.scope["headers"]]
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
        verified = sigv4.verify(request.method, raw_path.decode("latin-1"),
                                request.scope.get("query_string", b"").decode("latin-1"),
                                headers, body, secret_for)
        return verified, found["key"]

    def admit(self, request: Request, body: bytes, target: str, op_model,
              seen: dict[str, str]) -> tuple[Any, dict[str, Any]]:
        """Authenticate, then parse and check the request: (principal, service params).

        One trip to a thread for all of it; ``seen["key_id"]`` names the signer for the log.
        """
        verified, key = self.authenticate(request, body)
        seen["key_id"] = verified.access_key_id
        if target and "x-amz-target" not in verified.signed_headers:  # else a captured read
            raise InvalidSignature("'X-Amz-Target' must be a signed header")  # could delete
        if op_model is None:
            raise UnknownOperation(
                f"Unknown operation {target!r}: expected X-Amz-Target: "
                f"{protocol.TARGET_PREFIX}<Operation>" if target else
                "Missing X-Amz-Target header: expected RekognitionService.<Operation>")
        if not self.supported(op_model.name):
            raise UnknownOperation(
                f"candor does not implement {op_model.name}; see docs/http-api.md for the "
                "supported operations")
        descriptor = operations.spec(op_model.name)
        if descriptor is not None and descriptor.mutates:
            self.seen.accept_once(verified)  # a replayed signature is refused
        reference = request.headers.get(AUTHORIZATION_REFERENCE_HEADER)
        if reference is not None:
            if AUTHORIZATION_REFERENCE_HEADER not in verified.signed_headers:
                raise InvalidSignature(
                    "'X-Candor-Authorization-Reference' must be a signed header")
            seen["authorization_reference"] = reference
        return principal_for(key), self.prepare(op_model, body)

    def admit_and_respond(self, request: Request, body: bytes, target: str, op_model,
                          seen: dict[str, str], operation: str, request_id: str
                          ) -> tuple[bytes, dict[str, str]]:
        """:meth:`admit` then :meth:`respond`, in one trip to a worker thread: a second hop
        (and the event loop's wake-up between the two) cost every request CPU under the GIL,
        for nothing; an unauthenticated request still does no work before it is refused."""
        principal, params = self.admit(request, body, target, op_model, seen)
        return self.respond(principal, operation, params, request_id,
                            seen.get("authorization_reference"))

    def run(self, principal, operation: str, params: dict[str, Any], request_id: str,
            authorization_reference: str | None = None) -> bytes:
        """The operation (on a worker thread) and its response already serialised."""
        return protocol.encode_output(self.invoke(
            principal, operation, params, request_id,
            authorization_reference=authorization_reference))

    def respond(self, principal, operation: str, params: dict[str, Any], request_id: str,
                authorization_reference: str | None = None) -> tuple[bytes, dict[str, str]]:
        """:meth:`run` plus the response headers: a call held for human review carries its
        review id in ``X-Candor-Review-Id`` as well as in the body's ``ReviewId``."""
        with announced(self.batcher, operation):  # an idle embedder waits for its chips
            resp = self.invoke(principal, operation, params, request_id,
                               authorization_reference=authorization_reference)
        rid = resp.get("ReviewId") if isinstance(resp, dict) else None
        return protocol.encode_output(resp), ({REVIEW_HEADER: rid} if isinstance(rid, str) else {})

    def prepare(self, op_model, body: bytes) -> dict[str, Any]:
        """The request as the service takes it: parsed, checked, S3 images fetched."""
        return self.s3.resolve(op_model.name,
                               protocol.decode_input(op_model, protocol.parse_body(body)))

    def invoke(self, principal, operation: str, params: dict[str, Any], request_id: str,
               authorization_reference: str | None = None) -> dict[str, Any]:
        """Run one operation for an authenticated principal: the seam governance wraps. The
        gate's policy decides and the call is recorded in the audit ledger; there is no way
        to run an operation past it."""
        return self.gate.invoke(principal, operation, params, request_id,
                                authorization_reference=authorization_reference)

    def supported(self, operation: str) -> bool:
        from candor.service import OPERATIONS, _load_operations

        _load_operations()
        return operation in OPERATIONS

    def start(self) -> None:
        """Background duties: the retention purge timer, when there is a gate and an interval."""
        if self.retention_interval > 0:
            from candor.governance.erasure import RetentionTimer, purge
            from candor.governance.gate import system_principal

            store, ledger = self.keys.store, self.gate.ledger
            principal = system_principal("system:retention")
            self.retention_timer = RetentionTimer(
                store, ledger, self.retention_interval,
                run=lambda: self.gate.run_candor(
                    principal, "Purge", {}, lambda: purge(store, ledger, principal=principal),
                    records_itself=True)
            ).start()
        if self.checkpointer is not None:
            self.checkpointer.start()
        if getattr(self.service, "settings", None) is not None:
            from candor.service.jobs import runner_of

            self.jobs = runner_of(self.service).start()  # resumes jobs a stop interrupted

    def close(self) -> None:
        """Finish running operations, then write the changed vector indexes (a rebuild saved)."""
        if self.retention_timer is not None:
            self.retention_timer.stop()
        if self.jobs is not None:
            self.jobs.stop()  # running jobs stay IN_PROGRESS and resume on the next start
        self.pool.shutdown(wait=True)
        if self.batcher is not None:
            self.batcher.close()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        close = getattr(self.service, "close", None)
        if callable(close):
            close()
        save = getattr(self.keys.store, "save_indexes", None)
        if callable(save):
            save()


def default_workers() -> int:
    """Worker threads by default: enough requests in flight that while one batch of chips is
    in the network the next images are being decoded and detected (on 2 cores, 8: the
    pipeline's read-ahead), bounded so that a many-core host does not start hundreds."""
    return min(4 * available_cores(), 32)


def principal_for(key: ActiveKey):
    """The governance principal an access key stands for."""
    from candor.governance.principal import Principal

    return Principal(name=key.access_key_id, org=key.org, category=key.category, kind="key")


def create_app(gateway: Gateway, warmup: bool = True) -> FastAPI:
    """The ASGI app over ``gateway``."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if warmup:
            await asyncio.get_running_loop().run_in_executor(gateway.pool, _warm_up, gateway)
        gateway.start()
        yield
        await anyio.to_thread.run_sync(gateway.close)

    protocol.service_model()  # parse botocore's model now, not on the first request
    app = DirectApp(title="candor", docs_url=None, redoc_url=None, openapi_url=None,
                    lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)
    app.state.gateway = gateway

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "workers": gateway.workers}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(gateway.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/")
    async def rekognition(request: Request) -> Response:
        try:
            return await handle(gateway, request)
        except Exception:  # handle answers its own errors; this is the last line for a bug
            rid = request.scope["state"]["request_id"]
            log.exception("request %s failed", rid)
            return _error_response(InternalServerError(f"Internal server error; request id {rid}"))

    app.rekognition = rekognition  # POST / skips the middleware stack (DirectApp)

    from candor.api.console import mount as mount_console

    mount_console(app, gateway)  # /console: before the catch-all below

    @app.api_route("/{path:path}", methods=list(OTHER_METHODS), include_in_schema=False)
    async def elsewhere(request: Request, path: str) -> Response:
        """Anything but ``POST /`` (and the two GETs above) is no Rekognition operation."""
        return _error_response(UnknownOperation(
            f"{request.method} /{path} is not an operation: Rekognition requests are "
            "POST / with X-Amz-Target: RekognitionService.<Operation>"), status=404)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Whatever Starlette refuses on its own still gets AWS's error shape, not HTML."""
        return _error_response(UnknownOperation(
            f"{request.method} {request.url.path}: {exc.detail}"), status=exc.status_code)

    return app


async def handle(gateway: Gateway, request: Request) -> Response:
    """One AWS JSON 1.1 request, start to finish; every failure becomes AWS's error shape."""
    request_id = request.scope["state"]["request_id"]
    started = time.perf_counter()
    target = request.headers.get("x-amz-target", "")
    operation = target[len(protocol.TARGET_PREFIX):] if target.startswith(
        protocol.TARGET_PREFIX) else ""
    op_model = protocol.operation_model(operation) if operation else None
    label = operation if op_model is not None else "unknown"
    seen: dict[str, str] = {}
    gateway.in_flight.inc()
    body, counted = b"", False
    try:
        images = protocol.image_count(op_model) if op_model is not None else 0
        body = await read_body(request, body_limit(images),
                               ImageTooLarge if images else InvalidParameter, gateway.bodies)
        gateway.pending, counted = gateway.pending + 1, True  # one event loop: no lock needed
        if gateway.pending > gateway.max_pending:
            raise Throttling(f"Too many requests in progress ({gateway.max_pending}); "
                             "slow down and retry")
        payload, headers = await asyncio.get_running_loop().run_in_executor(
            gateway.pool, gateway.admit_and_respond, request, body, target, op_model, seen,
            operation, request_id)
        status = 200
        response = Response(payload, status_code=200, media_type=protocol.CONTENT_TYPE,
                            headers=headers)
    except CandorError as exc:
        response = _error_response(exc)
        status = response.status_code
        gateway.errors.labels(label, exc.code).inc()
    except Exception:  # a real bug: logged with the request id, reported as AWS's 500
        log.exception("request %s (%s) failed", request_id, label)
        exc = InternalServerError(f"Internal server error; request id {request_id}")
        status = 500
        response = _error_response(exc)
        gateway.errors.labels(label, exc.code).inc()
    finally:
        gateway.pending -= counted
        gateway.bodies.release(len(body))
        gateway.in_flight.dec()
    elapsed = time.perf_counter() - started
    gateway.requests.labels(label, str(status)).inc()
    gateway.latency.labels(label).observe(elapsed)
    log.info("%s %s key=%s status=%s %.1fms", request_id, label, seen.get("key_id", "-"), status,
             elapsed * 1e3)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _error_response(exc: CandorError, status: int | None = None) -> Response:
    """AWS's error shape; InternalServerError is always a 500 (boto3 retries those)."""
    status = status or (500 if exc.code == "InternalServerError" else exc.http_status)
    return Response(protocol.encode_error(exc), status_code=status,
                    media_type=protocol.CONTENT_TYPE, headers={"x-amzn-ErrorType": exc.code})


def _warm_up(gateway: Gateway) -> None:
    """Load the models before the first request, so that it is not the one that waits."""
    try:
        import numpy as np

        from candor.face import tracking
        from candor.face.imaging import Image

        # the shape predictors too (a blank image has no face to load them for), and the
        # one-thread session that video jobs and the batcher under load use
        tracking.warm(gateway.service.engine, requests=True)
        blank = Image(pixels=np.zeros((120, 120, 3), np.uint8), format="PNG", sha256="0" * 64)
        gateway.service.call("DetectFaces", {"Image": {"Bytes": blank}})
    except Exception as exc:  # warm-up is an optimisation; the first request will say what is wrong
        log.warning("warm-up failed: %s", exc)
