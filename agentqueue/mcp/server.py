"""`build_server(queue)`: the MCP server agents operate the queue through.

Tools (`tools.py`), resources and prompts (`resources.py`) call the same `Queue` methods as
Python code. The server follows the store's event feed while any session is open and publishes
a resource-updated event for `agentqueue://jobs/{id}` whenever that job changes, so a subscribed
agent re-reads it instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated

from agentqueue import __version__
from agentqueue.errors import AgentQueueError
from agentqueue.mcp import resources, tools
from agentqueue.mcp.access import LocalAccess
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


class JobWatch:
    """Publishes resource updates for changed jobs while at least one session is open."""

    def __init__(self, queue: Queue, bus: InMemorySubscriptionBus) -> None:
        self.queue = queue
        self.bus = bus
        self._users = 0
        self._task: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Keep following the feed while the caller's session runs."""
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
                async for event in self.queue.events():
                    await self.bus.publish(ResourceUpdated(uri=resources.job_uri(event.job_id)))
            except AgentQueueError as error:
                logger.warning("MCP job watch lost the event feed, retrying: %s", error)
                await asyncio.sleep(1.0)


def build_server(queue: Queue, *, local: LocalAccess | None = None) -> MCPServer[Any]:
    """The MCP server of `queue`.

    Args:
        queue: the queue the tools act on (opened on first use).
        local: the access of callers the transport does not identify (stdio, in-process):
            `LocalAccess()` is the local user with admin scope. Over HTTP the mount checks
            each session's API key instead.
    """
    bus = InMemorySubscriptionBus()
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
