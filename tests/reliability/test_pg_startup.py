"""A PostgreSQL server that is starting up accepts TCP connections but refuses sessions with
57P03 until it is ready. Each way the store connects (its engines, its direct pools, a `Queue`
opening) waits that out and then runs; with a bound shorter than the start-up, it fails with a
clear error and runs nothing.

The server is a private one (`servers.private_postgres`) started as a standby with hot standby
off: it refuses every session with 57P03 ("not accepting connections") until it is promoted,
so the test decides when the start-up ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import pytest

from agentqueue import Queue
from agentqueue.backends.sql import pg_startup
from agentqueue.errors import BackendUnavailable
from tests.conftest import fresh_name
from tests.reliability.servers import PrivatePostgres, private_postgres

pytestmark = pytest.mark.slow  # each test starts a private cluster


@pytest.fixture
def server() -> Iterator[PrivatePostgres]:
    """A private cluster (its own, since it is stopped and made a standby)."""
    with private_postgres() as private:
        yield private


class Refusals:
    """Counts the connects of the store that the server refused while starting (each one a
    pause of `pg_startup.Patience`), so the test ends the start-up only once the store has
    been refused: no timer racing the store's first connect."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self._waiting: list[tuple[int, asyncio.Event]] = []
        original = pg_startup.Patience.pause_after

        def counted(patience: pg_startup.Patience, error: Exception) -> float:
            pause = original(patience, error)  # raises for anything but a refusal
            self.count += 1
            for wanted, reached in self._waiting:
                if self.count >= wanted:
                    reached.set()
            return pause

        monkeypatch.setattr(pg_startup.Patience, "pause_after", counted)

    async def at_least(self, count: int) -> None:
        """Wait until the store was refused `count` times in all."""
        reached = asyncio.Event()
        if self.count < count:
            self._waiting.append((count, reached))
            async with asyncio.timeout(10):
                await reached.wait()


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> Refusals:
    return Refusals(monkeypatch)


def url_of(server: PrivatePostgres) -> str:
    return f"{server.url}?schema={fresh_name('aqs_')}"


async def refuses_sessions(server: PrivatePostgres) -> None:
    """Check the server answers 57P03 right now (else the test proves nothing)."""
    with pytest.raises(asyncpg.CannotConnectNowError):
        await asyncpg.connect(server.url)


async def test_a_queue_opened_while_the_server_starts_waits_and_then_runs(
    server: PrivatePostgres, refusals: Refusals
) -> None:
    server.start_refusing_sessions()
    await refuses_sessions(server)
    queue = Queue(url_of(server))
    opening = asyncio.ensure_future(queue.open())  # connects, then migrates
    try:
        await refusals.at_least(2)  # refused, paused, refused again: it is waiting
        assert not opening.done()
        await asyncio.to_thread(server.promote)
        async with asyncio.timeout(10):
            await opening
        job_id = await queue.add_job("after-start")
        found = await queue.get_job(job_id)
        assert found is not None
        assert found.status == "pending"
    finally:
        opening.cancel()
        await queue.close()


async def test_every_kind_of_call_waits_for_a_restarting_server(
    server: PrivatePostgres, refusals: Refusals
) -> None:
    async with Queue(url_of(server)) as queue:
        first = await queue.add_job("before")
        server.start_refusing_sessions()  # a restart: every pooled connection is gone
        await refuses_sessions(server)
        # An enqueue and a claim (the direct pools), a read and a write transaction (the
        # engine), all started while the server refuses sessions.
        calls = asyncio.gather(
            queue.add_job("during"),
            queue.backend.claim(
                worker_id="w", queue=None, job_types=None, limit=1, lease_seconds=30
            ),
            queue.get_job(first),
            queue.cancel_job(first),
        )
        try:
            await refusals.at_least(8)  # each of the four refused at least twice
            assert not calls.done()
            await asyncio.to_thread(server.promote)
            async with asyncio.timeout(10):
                added, claimed, read, cancelled = await calls
        finally:
            calls.cancel()
        assert added > first
        assert read is not None
        assert read.id == first
        assert cancelled.id == first
        assert [job.id for job in claimed] in ([], [first], [added])
        page = await queue.list_jobs()
        assert sorted(job.id for job in page.items) == [first, added]


async def test_a_server_still_starting_at_the_bound_fails_clearly_and_runs_nothing(
    server: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = url_of(server)
    async with Queue(url):
        pass  # migrated while the server ran
    monkeypatch.setattr(pg_startup, "STARTUP_WAIT", 0.5)
    server.start_refusing_sessions()
    await refuses_sessions(server)
    queue = Queue(url)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"still starting up after 0\.5 s"):
        await queue.open()
    assert 0.45 <= time.monotonic() - started < 3.0
    await queue.close()
    server.promote()
    async with Queue(url) as queue:
        assert (await queue.list_jobs()).items == []  # nothing was written meanwhile
