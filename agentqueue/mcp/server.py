"""`build_server(queue)`: the MCP server agents operate the queue through.

Tools (`tools.py`), resources and prompts (`resources.py`) call the same `Queue` methods as
Python code. While an agent listens for resource updates, the server follows the store's event
feed and publishes a resource-updated event for `agentqueue://jobs/{id}` whenever that job
changes, so a subscribed agent re-reads it instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated, ServerEvent

from agentqueue import __version__
from agentqueue.errors import AgentQueueError
from agentqueue.mcp import resources, tools
from agentqueue.mcp.access import LocalAccess
from agentqueue.models import JobEvent
from agentqueue.queue import Queue

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
agentqueue is a durable job queue. Add work with add_job (check describe_job_type for the
payload schema first), follow it with wait_for_job or get_job, and ask explain_job why a job is
not running or failed. Jobs that need a person wait on tokens: list_tokens(status=['pending'])
and complete_token. Schedules are cron jobs (add_cron_job). Bulk changes (cancel_jobs,
retry_jobs) are two calls: a dry_run preview, then the confirmation_id. list_jobs(mine=true)
finds the jobs you added, also in a later conversation. search_docs answers how-to questions.
"""


IDLE_REFRESH = 1.0
"""Seconds between the idle watch's looks at the end of the event feed (see `JobWatch`)."""


class ListenedBus(InMemorySubscriptionBus):
    """The in-process subscription bus, which also says whether anyone listens."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners = 0
        self.listened = asyncio.Event()
        """Set while at least one listener is subscribed."""

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """Register `listener`; the returned unsubscribe callable is idempotent."""
        unsubscribe = super().subscribe(listener)
        self.listeners += 1
        self.listened.set()
        gone = False

        def leave() -> None:
            nonlocal gone
            if not gone:
                gone = True
                self.listeners -= 1
                if not self.listeners:
                    self.listened.clear()
            unsubscribe()

        return leave


class JobWatch:
    """Publishes resource updates for changed jobs while anyone listens.

    Reading the feed costs a store read per commit (two transactions on PostgreSQL), which a
    busy REST API paid for nobody while no agent listened. Idle, the watch only keeps the
    feed's end in view (at most `IDLE_REFRESH` old), so a first listener still hears of
    every change committed after it subscribed (and of a few just before: harmless, it
    re-reads the job).
    """

    def __init__(self, queue: Queue, bus: ListenedBus) -> None:
        self.queue = queue
        self.bus = bus
        self._users = 0
        self._task: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Keep watching while the caller's session runs."""
        self._users += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow(), name="agentqueue-mcp-watch")
        try:
            yield
        finally:
            self._users -= 1
            if self._users == 0 and self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None

    async def _follow(self) -> None:
        while True:
            try:
                await self._watch()
            except AgentQueueError as error:
                logger.warning("MCP job watch lost the event feed, retrying: %s", error)
                await asyncio.sleep(1.0)

    async def _watch(self) -> None:
        store = await self.queue._store()  # pyright: ignore[reportPrivateUsage]
        cursor = await store.latest_event_cursor()
        while True:
            if not self.bus.listened.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.bus.listened.wait(), IDLE_REFRESH)
                if not self.bus.listened.is_set():
                    cursor = await store.latest_event_cursor()
                continue
            cursor = await self._publish(cursor)

    async def _publish(self, cursor: str | None) -> str | None:
        """Publish the feed's events after `cursor` until nobody listens; the last cursor."""
        # Queue.events is an async generator: closed here, not whenever it is collected.
        feed = cast(
            "AsyncGenerator[JobEvent, None]",
            self.queue.events(after=cursor, from_start=cursor is None),
        )
        async with contextlib.aclosing(feed):
            async for event in feed:
                cursor = event.cursor
                await self.bus.publish(ResourceUpdated(uri=resources.job_uri(event.job_id)))
                if not self.bus.listened.is_set():
                    break
        return cursor


def build_server(queue: Queue, *, local: LocalAccess | None = None) -> MCPServer[Any]:
    """The MCP server of `queue`.

    Args:
        queue: the queue the tools act on (opened on first use).
        local: the access of callers the transport does not identify (stdio, in-process):
            `LocalAccess()` is the local user with admin scope. Over HTTP the mount checks
            each session's API key instead.
    """
    bus = ListenedBus()
    watch = JobWatch(queue, bus)

    @asynccontextmanager
    async def lifespan(_server: MCPServer[Any]) -> AsyncIterator[None]:
        await queue.open()
        async with watch.running():
            yield

    server: MCPServer[Any] = MCPServer(
        "agentqueue",
        title="agentqueue",
        description="Enqueue, watch, approve and schedule durable background jobs.",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        subscriptions=bus,
    )
    tools.register(server, queue, local or LocalAccess())
    resources.register(server, queue)
    return server
