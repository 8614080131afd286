"""Bring your own connection: a Queue built on the caller's engine uses it and never closes it."""

from __future__ import annotations

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from agentqueue import ConfigError, Queue
from agentqueue.testing import run_due_jobs
from tests.conftest import POSTGRES_URL, fresh_name, postgres_reachable, require_server


async def test_a_queue_on_my_postgres_engine_uses_its_schema_and_leaves_it_open() -> None:
    require_server("PostgreSQL", postgres_reachable(), POSTGRES_URL)
    schema = fresh_name("aqt_")
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    engine = create_async_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"),
        connect_args={"server_settings": {"search_path": schema}},
    )
    try:
        queue = Queue(engine)
        assert "postgres" in queue.url
        done: list[int] = []

        @queue.handler("note")
        async def note(payload: dict[str, int]) -> None:
            done.append(payload["n"])

        async with queue:
            await queue.add_jobs([{"job_type": "note", "payload": {"n": n}} for n in range(3)])
            counts = await run_due_jobs(queue)
        assert counts["complete"] == 3
        assert sorted(done) == [0, 1, 2]
        async with engine.connect() as conn:  # still open after the queue closed
            stored = await conn.execute(sa.text("SELECT count(*) FROM aq_jobs"))
            assert stored.scalar_one() == 3
        tables = await admin.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        assert "aq_jobs" in {row["table_name"] for row in tables}
    finally:
        await engine.dispose()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


async def test_a_queue_on_my_sqlite_engine_uses_its_file_and_leaves_it_open(
    sqlite_url: str,
) -> None:
    engine = create_async_engine(sqlite_url.replace("sqlite:///", "sqlite+aiosqlite:///"))
    try:
        async with Queue(engine) as queue:
            job_id = await queue.add_job("note", {"n": 1})
        async with engine.connect() as conn:
            found = await conn.execute(sa.text("SELECT id FROM aq_jobs"))
            assert found.scalar_one() == job_id
    finally:
        await engine.dispose()


def test_an_object_that_is_no_store_is_refused_with_what_to_pass() -> None:
    with pytest.raises(ConfigError, match="AsyncEngine"):
        Queue(object())
