"""SQLite group commit: writes queued behind a busy writer commit together, each with its own
answer (its result, its error with its writes undone, a database error as it would be alone)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from agentqueue import Queue
from agentqueue.backends.sql.sqlite import SqliteBackend
from agentqueue.errors import BackendUnavailable


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SqliteBackend]:
    """An opened SQLite store with a scratch table."""
    async with Queue(sqlite_url) as queue:
        backend = queue.backend
        assert isinstance(backend, SqliteBackend)
        await backend._write(lambda conn: conn.exec_driver_sql("CREATE TABLE scratch (n INT)"))
        yield backend


@contextmanager
def commits(backend: SqliteBackend) -> Iterator[list[int]]:
    """Count the write transactions `backend` commits while inside (reads commit too)."""
    seen: list[int] = []

    def count(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("aq_write"):
            seen.append(1)

    event.listen(backend.engine, "commit", count)
    try:
        yield seen
    finally:
        event.remove(backend.engine, "commit", count)


async def queued_together(backend: SqliteBackend, works: list[Callable[[Any], Any]]) -> list[Any]:
    """Run `works` as concurrent writes while the writer thread is held, so they queue up and
    commit in one batch; return each one's result or exception."""
    held = threading.Event()
    backend._writer.submit(held.wait, 10)
    tasks = [asyncio.ensure_future(backend._write(work)) for work in works]
    await asyncio.sleep(0.05)  # every write is queued before the writer is let go
    held.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


def insert(n: int) -> Callable[[sa.Connection], int]:
    """A write that stores `n` in the scratch table."""

    def work(conn: sa.Connection) -> int:
        conn.exec_driver_sql("INSERT INTO scratch (n) VALUES (?)", (n,))
        return n

    return work


async def stored(backend: SqliteBackend) -> list[int]:
    """The scratch table's values, read back from the file."""
    rows = await backend._read(lambda conn: conn.exec_driver_sql("SELECT n FROM scratch").all())
    return sorted(row[0] for row in rows)


async def test_concurrent_adds_share_commits_and_all_are_stored(sqlite_url: str) -> None:
    async with Queue(sqlite_url) as queue:
        assert isinstance(queue.backend, SqliteBackend)
        with commits(queue.backend) as seen:
            ids = await asyncio.gather(*(queue.add_job("t", {"i": i}) for i in range(50)))
        assert len(seen) < 50
    async with Queue(sqlite_url) as reopened:
        jobs = (await reopened.list_jobs(limit=100)).items
    assert sorted(job.id for job in jobs) == sorted(ids)
    assert sorted(job.payload["i"] for job in jobs) == list(range(50))


async def test_a_failing_write_gets_its_error_and_only_its_writes_are_undone(
    store: SqliteBackend,
) -> None:
    def refused(conn: sa.Connection) -> None:
        insert(99)(conn)
        raise ValueError("refused")

    with commits(store) as seen:
        results = await queued_together(store, [insert(1), refused, insert(2)])
    assert (results[0], results[2]) == (1, 2)
    assert isinstance(results[1], ValueError)
    assert len(seen) == 1
    assert await stored(store) == [1, 2]


async def test_a_database_error_in_the_batch_is_answered_as_if_the_write_ran_alone(
    store: SqliteBackend,
) -> None:
    def broken(conn: sa.Connection) -> None:
        conn.exec_driver_sql("INSERT INTO no_such_table (n) VALUES (1)")

    results = await queued_together(store, [insert(1), broken, insert(2)])
    assert (results[0], results[2]) == (1, 2)
    assert isinstance(results[1], BackendUnavailable)
    assert "no_such_table" in str(results[1])
    assert await stored(store) == [1, 2]


async def test_a_cancelled_write_that_did_not_start_never_runs(store: SqliteBackend) -> None:
    held = threading.Event()
    store._writer.submit(held.wait, 10)
    cancelled = asyncio.ensure_future(store._write(insert(7)))
    kept = asyncio.ensure_future(store._write(insert(8)))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    await asyncio.sleep(0.01)  # the cancel reaches the queued write on the next loop turns
    held.set()
    assert await kept == 8
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await stored(store) == [8]
