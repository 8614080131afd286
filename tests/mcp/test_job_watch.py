"""The MCP job watch reads the event feed only while an agent listens for resource updates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.server.subscriptions import ResourceUpdated, ServerEvent

from agentqueue import Queue
from agentqueue.mcp import resources
from agentqueue.mcp.server import JobWatch, ListenedBus


class CountedFeed:
    """Counts the feeds the watch opens on `queue` (the real feed, only counted)."""

    def __init__(self, queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = 0
        events = queue.events

        def counted(**options: Any) -> AsyncIterator[Any]:
            self.opened += 1
            return events(**options)

        monkeypatch.setattr(queue, "events", counted)


async def next_update(updates: asyncio.Queue[ServerEvent], uri: str) -> None:
    """Wait for an update of `uri` (others may come first)."""
    while True:
        event = await asyncio.wait_for(updates.get(), 10)
        if isinstance(event, ResourceUpdated) and str(event.uri) == uri:
            return


async def test_the_watch_reads_the_feed_only_while_someone_listens(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = CountedFeed(queue, monkeypatch)
    bus = ListenedBus()
    watch = JobWatch(queue, bus)
    async with watch.running():
        for _ in range(5):
            await queue.add_job("report")
        await asyncio.sleep(0.3)
        assert feed.opened == 0  # nobody listens: no read per commit

        updates: asyncio.Queue[ServerEvent] = asyncio.Queue()
        leave = bus.subscribe(updates.put_nowait)
        assert bus.listened.is_set()
        job_id = await queue.add_job("report")  # right after subscribing: still heard
        await next_update(updates, resources.job_uri(job_id))
        assert feed.opened == 1

        leave()
        leave()  # idempotent: the count stays right
        assert bus.listeners == 0
        assert not bus.listened.is_set()
        await queue.add_job("report")  # the event that shows the watch nobody listens
        await asyncio.sleep(0.3)
        opened = feed.opened
        for _ in range(3):
            await queue.add_job("report")
        await asyncio.sleep(0.3)
        assert feed.opened == opened  # idle again

        again: asyncio.Queue[ServerEvent] = asyncio.Queue()
        bus.subscribe(again.put_nowait)
        job_id = await queue.add_job("report")
        await next_update(again, resources.job_uri(job_id))
