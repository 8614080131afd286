"""`create_app(queue)`: the REST API, live event streams, metrics and the dashboard.

Routes live in `routes/` (one module per resource) and call the same `Queue` methods as
Python code, with the core's pydantic models as bodies and answers, so `/openapi.json` says
exactly what the core accepts. Errors have one shape (`errors.py`); keys and scopes are checked
by `security.py`; every mutating call writes an audit record (`deps.audited`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentqueue import __version__
from agentqueue.api import errors
from agentqueue.api.deps import Reader
from agentqueue.api.metrics import CONTENT_TYPE, Metrics
from agentqueue.api.routes import cron, events, jobs, meta, tokens
from agentqueue.api.security import Guard
from agentqueue.api.settings import ApiSettings
from agentqueue.backends import describe
from agentqueue.errors import AgentQueueError
from agentqueue.mcp import http as mcp_http
from agentqueue.queue import Queue
from agentqueue.throughput import ThroughputReader

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def create_app(
    queue: Queue | None = None,
    *,
    settings: ApiSettings | None = None,
    worker: dict[str, Any] | None = None,
    close_queue: bool = True,
    startup: Callable[[Queue], Awaitable[None]] | None = None,
) -> FastAPI:
    """Build the app around `queue` (default: `Queue()`, i.e. $AGENTQUEUE_URL or SQLite).

    Args:
        queue: the queue every route calls; opened when the app starts.
        settings: binding and limits (`ApiSettings`).
        worker: settings of a worker to run inside the app (`Queue.worker(**worker)`); None
            runs none.
        close_queue: close the queue when the app stops.
        startup: awaited with the opened queue before the app serves (seed data, say).
    """
    queue = queue if queue is not None else Queue()
    settings = settings or ApiSettings()
    metrics = Metrics(queue)
    mcp_server = _mcp_server(queue) if settings.mcp else None
    mcp_app = mcp_http.session_app(mcp_server, settings) if mcp_server is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await queue.open()
        if startup is not None:
            await startup(queue)
        await _say_who_may_call(app, queue, settings)
        if settings.metrics:
            metrics.start()
        running = _start_worker(queue, worker)
        sessions = (
            mcp_server.session_manager.run() if mcp_server is not None else contextlib.nullcontext()
        )
        try:
            async with sessions:
                yield
        finally:
            if running is not None:
                running[0].request_stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await running[1]
            await metrics.stop()
            if close_queue:
                await queue.close()

    app = FastAPI(
        title="agentqueue",
        version=__version__,
        description="A durable background-job queue: jobs, tokens, cron, live events.",
        lifespan=lifespan,
    )
    app.state.queue = queue
    app.state.settings = settings
    app.state.guard = Guard(queue, settings)
    app.state.metrics = metrics
    app.state.throughput = ThroughputReader(queue)
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SameOrigin)
    if mcp_app is not None:
        app.add_middleware(mcp_http.McpDoor, mcp_app=mcp_app, guard=app.state.guard)

    # Each resource's router straight on the app, not under one /api/v1 router: FastAPI
    # walks every level of included routers on each request to find the route, and the
    # extra level cost a POST about a tenth of the API layer's own time.
    for module in (jobs, events, tokens, cron, meta):
        app.include_router(module.router, prefix=API_PREFIX, responses=errors.ERROR_RESPONSES)

    @app.get(
        "/healthz",
        tags=["health"],
        summary="Is the store reachable?",
        response_model=Health,
        responses={503: {"model": Health, "description": "The store does not answer"}},
    )
    async def healthz() -> JSONResponse:
        """200 when the store answers, 503 (with why) when it does not. Needs no key."""
        try:
            await queue.stats()
        except AgentQueueError as error:
            return JSONResponse(
                {"status": "unavailable", "store": describe(queue.url), "error": error.message},
                status_code=503,
            )
        return JSONResponse({"status": "ok", "store": describe(queue.url)})

    if settings.metrics:

        @app.get(
            "/metrics",
            tags=["health"],
            summary="Prometheus metrics",
            response_class=PlainTextResponse,
            # Errors are JSON although the metrics are text: say so, or the document would
            # give the errors the route's text/plain type.
            responses={
                status: {**spec, "content": {"application/json": {}}}
                for status, spec in errors.ERROR_RESPONSES.items()
                if status in (401, 403, 503)
            },
        )
        async def prometheus(access: Reader) -> Response:
            """Jobs by type and status, outcome counters, run and wait times, live workers."""
            return Response(await metrics.render(), media_type=CONTENT_TYPE)

    if settings.dashboard:
        from agentqueue.api.dashboard import mount

        mount(app)
    _declare_keys(app)
    return app


def _declare_keys(app: FastAPI) -> None:
    """Say in the OpenAPI document how calls authenticate (the `Guard` reads the key itself,
    so FastAPI cannot infer it): a bearer key or `X-API-Key`, on every operation that can
    answer 401. Clients and generated SDKs then know which calls need a key."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = plain()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearerKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "an API key (`agentqueue api-keys create`)",
            },
            "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "401" in operation.get("responses", {}):
                    operation["security"] = [{"bearerKey": []}, {"headerKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


class Health(BaseModel):
    """What `/healthz` answers."""

    status: str
    """`ok` or `unavailable`."""
    store: str
    """The store, without its password."""
    error: str | None = None


async def _say_who_may_call(app: FastAPI, queue: Queue, settings: ApiSettings) -> None:
    """Log at start-up when the app runs open, or refuses everything for want of a key."""
    if settings.loopback and await app.state.guard.open_access():
        logger.warning(
            "agentqueue API open without keys on %s (loopback, no API key in the store); "
            "create one with `agentqueue api-keys create` to require keys",
            settings.host,
        )
    elif not settings.loopback and not await _has_active_key(queue):
        # Not open on a public address (a container's 0.0.0.0, say): without this line a
        # first user sees only 401s and has to guess why.
        logger.warning(
            "agentqueue API on %s needs an API key and the store has none: every route but "
            "/healthz answers 401 until one exists. Create one against the same store "
            "(AGENTQUEUE_URL): `agentqueue api-keys create --name admin --scope admin`",
            settings.host,
        )


async def _has_active_key(queue: Queue) -> bool:
    return any(key.revoked_at is None for key in await queue.list_api_keys())


def _mcp_server(queue: Queue) -> Any:
    from agentqueue.mcp.server import build_server

    return build_server(queue)


def _start_worker(
    queue: Queue, settings: dict[str, Any] | None
) -> tuple[Any, asyncio.Task[Any]] | None:
    if settings is None:
        return None
    worker = queue.worker(**{"handle_signals": False, **settings})
    return worker, asyncio.create_task(worker.run(), name="agentqueue-serve-worker")


class BodyLimit:
    """Answer 413 to a request body larger than `max_bytes` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count what arrives."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        too_large = False

        async def counted() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request" and not too_large:
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # End the body here; whatever the app answers to it is replaced below.
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded(message: Message) -> None:
            if not too_large:
                await send(message)

        await self.app(scope, counted, guarded)
        if too_large:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        error = errors.HttpError(
            "payload_too_large",
            f"the request body is larger than {self.max_bytes} bytes",
            max_bytes=self.max_bytes,
        )
        response = errors.error_response(error)
        await response({"type": "http"}, _no_receive, send)


class SameOrigin:
    """Refuse writes another site's page makes in the user's browser (CSRF).

    A browser names the page's origin on a cross-site request (`Origin`, and `Sec-Fetch-Site`);
    a write whose origin is not this server's own is refused with 403. Scripts and servers send
    neither header and are not affected. This matters most on an open loopback app, where any
    web page the developer visits could otherwise post to `http://127.0.0.1:8000`.
    """

    SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request."""
        if scope["type"] == "http" and scope.get("method", "GET") not in self.SAFE:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            if _cross_site(headers):
                error = errors.HttpError(
                    "forbidden",
                    "cross-site request refused: a page on another origin may not change this "
                    "queue (call the API from your own server, or serve the page from here)",
                )
                await errors.error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _cross_site(headers: dict[str, str]) -> bool:
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc.lower() != headers.get("host", "").lower()


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def request_queue(request: Request) -> Queue:
    """The queue of the app serving `request` (for extensions mounted on the app)."""
    return request.app.state.queue
