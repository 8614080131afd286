"""Transactional enqueue on every SQL store: the job commits or rolls back with my writes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from agentqueue import Queue
from tests.conftest import POSTGRES_URL, make_store_url


@pytest.fixture(params=["sqlite", "postgres"])
async def sql_queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    """A queue on each SQL store (the stores that declare transactional enqueue)."""
    async with Queue(make_store_url(request.param, request, tmp_path)) as queue:
        assert queue.backend.capabilities.transactional_enqueue
        yield queue


def _my_async_url(queue: Queue) -> str:
    """A URL for *my own* engine on the queue's database (another driver, another pool)."""
    if queue.url.startswith("sqlite"):
        return queue.url.replace("sqlite:///", "sqlite+aiosqlite:///", 1)
    return POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _count(queue: Queue) -> int:
    return sum((await queue.stats()).totals.values())


async def test_my_async_transaction_commits_or_rolls_back_my_job_with_my_writes(
    sql_queue: Queue,
) -> None:
    engine = create_async_engine(_my_async_url(sql_queue))
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TEMPORARY TABLE mine (x INTEGER)"))
            await conn.execute(sa.text("INSERT INTO mine VALUES (1)"))
            kept = await sql_queue.add_job("mail", {"to": "a"}, connection=conn)
        with contextlib.suppress(RuntimeError):
            async with engine.begin() as conn:
                await sql_queue.add_jobs([{"job_type": "mail"}] * 3, connection=conn)
                raise RuntimeError("my own work failed")
    finally:
        await engine.dispose()
    assert await _count(sql_queue) == 1
    job = await sql_queue.get_job(kept)
    assert job is not None
    assert job.status == "pending"
    assert [e.type.value for e in await sql_queue.get_job_events(kept)] == ["added"]


async def test_my_sync_connection_can_enqueue_inside_its_transaction(sqlite_url: str) -> None:
    # SQLite only: a sync PostgreSQL driver is not among the dependencies.
    sql_queue = await Queue(sqlite_url).open()
    engine = sa.create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            with conn.begin():
                job_id = await sql_queue.add_job("mail", connection=conn)
            with contextlib.suppress(RuntimeError), conn.begin():
                await sql_queue.add_job("mail", connection=conn)
                raise RuntimeError("rolled back")
    finally:
        engine.dispose()
    assert await _count(sql_queue) == 1
    assert await sql_queue.get_job(job_id) is not None
    await sql_queue.close()


async def test_a_connection_of_the_wrong_kind_is_refused(sql_queue: Queue) -> None:
    with pytest.raises(Exception, match="connection must be"):
        await sql_queue.add_job("mail", connection="not a connection")
    assert await _count(sql_queue) == 0
