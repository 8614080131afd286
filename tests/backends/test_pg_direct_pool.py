"""`pg_direct.DirectPool`, the connections of PostgreSQL's hot statements, on the real server:
reuse, its bound, and that no connection is reused after a statement that did not end cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from agentqueue.backends.sql.pg_direct import DirectError, DirectPool, DirectStatement
from tests.conftest import POSTGRES_URL, postgres_reachable, require_server

PID = DirectStatement(sa.select(sa.func.pg_backend_pid().label("pid")))
SLEEP_THEN_PID = DirectStatement(
    sa.select(
        sa.func.pg_sleep(sa.bindparam("seconds", type_=sa.Float())).label("slept"),
        sa.func.pg_backend_pid().label("pid"),
    )
)
REFUSED = DirectStatement(sa.select(sa.cast(sa.bindparam("text", type_=sa.Text()), sa.Integer())))


@pytest.fixture
async def pool() -> AsyncIterator[DirectPool]:
    require_server("PostgreSQL", postgres_reachable(), POSTGRES_URL)
    engine = create_async_engine(POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"))
    direct = DirectPool(
        engine, max_size=2, server_settings={"application_name": "aq direct pool test"}
    )
    try:
        yield direct
    finally:
        await direct.close()
        await engine.dispose()


async def pid_of(pool: DirectPool, seconds: float = 0.0) -> int:
    if seconds:
        rows = await pool.fetch(SLEEP_THEN_PID, {"seconds": seconds})
    else:
        rows = await pool.fetch(PID, {})
    return rows[0]["pid"]


async def test_one_connection_serves_calls_one_after_another(pool: DirectPool) -> None:
    pids = {await pid_of(pool) for _ in range(5)}
    assert len(pids) == 1


async def test_concurrent_calls_share_at_most_max_size_connections(pool: DirectPool) -> None:
    pids = await asyncio.gather(*(pid_of(pool, 0.05) for _ in range(6)))
    assert len(pids) == 6
    assert len(set(pids)) == 2  # max_size: the other four waited for a connection
    again = await asyncio.gather(*(pid_of(pool) for _ in range(2)))
    assert set(again) == set(pids)  # both kept for reuse


async def test_a_statement_cancelled_midway_leaves_no_connection_behind_to_reuse(
    pool: DirectPool,
) -> None:
    first = await pid_of(pool)
    call = asyncio.ensure_future(pid_of(pool, 5.0))
    await asyncio.sleep(0.2)  # the sleep is running on the server, its reply unread
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    after = await pid_of(pool)
    assert after != first  # the cut connection was not handed out again
    assert await pid_of(pool) == after


async def test_a_server_refusal_keeps_the_connection(pool: DirectPool) -> None:
    first = await pid_of(pool)
    with pytest.raises(DirectError) as refused:
        await pool.fetch(REFUSED, {"text": "not a number"})
    assert refused.value.sqlstate == "22P02"
    assert await pid_of(pool) == first


async def test_a_waiter_gets_a_new_connection_when_the_busy_ones_are_cut(
    pool: DirectPool,
) -> None:
    busy = [asyncio.ensure_future(pid_of(pool, 5.0)) for _ in range(2)]
    await asyncio.sleep(0.2)
    waiting = asyncio.ensure_future(pid_of(pool))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # both connections are busy
    for call in busy:
        call.cancel()
    pid = await asyncio.wait_for(waiting, 5)
    assert pid > 0
    assert all(call.cancelled() for call in busy)


async def test_a_closed_pool_opens_again_on_its_next_call(pool: DirectPool) -> None:
    first = await pid_of(pool)
    await pool.close()
    assert await pid_of(pool) != first
