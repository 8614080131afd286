"""Fixtures of the REST tests: an app on every store, an httpx client on it, a live server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from agentqueue import Queue
from agentqueue.api import ApiSettings, create_app


@dataclass
class Api:
    """An app, its queue and an httpx client that talks to it in-process."""

    app: FastAPI
    queue: Queue
    client: httpx.AsyncClient

    def with_key(self, key: str | None) -> httpx.AsyncClient:
        """Another client on the same app that sends `key` (None: no key)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://api", headers=headers
        )


@contextlib.asynccontextmanager
async def running_api(queue: Queue, **settings: Any) -> AsyncIterator[Api]:
    """An app (no dashboard unless asked) around `queue`, started, with a client."""
    settings.setdefault("dashboard", False)
    # MCP has its own tests; its session manager cannot run in a fixture (its task group must
    # be left in the task that entered it, and pytest tears fixtures down in another).
    settings.setdefault("mcp", False)
    app = create_app(queue, settings=ApiSettings(**settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield Api(app, queue, client)


@pytest.fixture
async def api(store_url: str) -> AsyncIterator[Api]:
    """The API on a fresh store of each kind, open (loopback, no keys)."""
    async with running_api(Queue(store_url)) as opened:
        yield opened


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.asynccontextmanager
async def live_server(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free loopback port in this loop; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
