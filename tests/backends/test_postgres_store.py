"""PostgreSQL-only behaviour: transactional enqueue, the commit-ordered feed, LISTEN wake-ups."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agentqueue import (
    AgentQueueError,
    BackendUnavailable,
    ConfigError,
    InvalidArgument,
    JobEvent,
    JobId,
    Queue,
)
from agentqueue.backends.sql.postgres import PostgresBackend, parse_url
from agentqueue.models import AuditRecord, Origin
from tests.conftest import POSTGRES_URL, eventually


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Queue]:
    async with Queue(postgres_url) as queue:
        yield queue


def _schema(queue: Queue) -> str:
    backend = queue.backend
    assert isinstance(backend, PostgresBackend)
    return backend.options.schema


async def _jobs_in(queue: Queue) -> int:
    return sum((await queue.stats()).totals.values())


async def test_a_job_added_on_my_sqlalchemy_connection_commits_with_my_transaction(
    pg: Queue,
) -> None:
    engine = create_async_engine(POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.connect() as conn:
            async with conn.begin():
                job_id = await pg.add_job("mail", {"to": "a"}, connection=conn)
                assert await pg.get_job(job_id) is None  # not visible before my commit
            assert await pg.get_job(job_id) is not None
            with contextlib.suppress(RuntimeError):
                async with conn.begin():
                    await pg.add_job("mail", {"to": "b"}, connection=conn)
                    raise RuntimeError("my own write failed")
    finally:
        await engine.dispose()
    assert await _jobs_in(pg) == 1
    assert [e.type.value for e in await pg.backend.read_events(after=None, limit=10)] == ["added"]


async def test_a_job_added_on_my_raw_asyncpg_connection_rolls_back_with_my_transaction(
    pg: Queue,
) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        with contextlib.suppress(RuntimeError):
            async with conn.transaction():
                await pg.add_jobs([{"job_type": "mail"}, {"job_type": "mail"}], connection=conn)
                raise RuntimeError("my own write failed")
        assert await _jobs_in(pg) == 0
        async with conn.transaction():
            (job_id,) = await pg.add_jobs([{"job_type": "mail"}], connection=conn)
        assert conn.is_closed() is False
    finally:
        await conn.close()
    job = await pg.get_job(job_id)
    assert job is not None
    assert job.status == "pending"


async def test_transactional_enqueue_is_refused_on_a_store_without_it(tmp_path: object) -> None:
    async with Queue("memory://") as queue:
        with pytest.raises(InvalidArgument, match="SQL store"):
            await queue.add_job("mail", connection=object())


async def test_the_feed_follows_commit_order_not_id_order(pg: Queue) -> None:
    schema = _schema(pg)
    start = await pg.backend.latest_event_cursor()
    slow = await asyncpg.connect(POSTGRES_URL)
    try:
        async with slow.transaction():
            await slow.execute(f'SET LOCAL search_path TO "{schema}"')
            early = await pg.add_job("early", connection=slow)  # takes the lower event id
            late = await pg.add_job("late")  # commits first
            seen = await pg.backend.read_events(after=start, limit=10)
            assert [e.job_id for e in seen] == [late]
            cursor = seen[-1].cursor
        after = await pg.backend.read_events(after=cursor, limit=10)
    finally:
        await slow.close()
    assert [e.job_id for e in after] == [early]
    assert after[0].id < seen[0].id  # ids out of commit order, yet nothing was skipped


async def _first_event(queue: Queue, after: str | None) -> JobEvent:
    async with contextlib.aclosing(queue.events(after=after, from_start=after is None)) as feed:
        return await anext(feed)


async def test_an_enqueue_in_another_process_wakes_a_waiter_through_notify(
    postgres_url: str,
) -> None:
    async with Queue(postgres_url) as waiter, Queue(postgres_url) as producer:
        waiter.backend.change_token()
        await eventually(_listening)  # measure the NOTIFY path, not the connection's start
        token = waiter.backend.change_token()
        started = time.monotonic()
        wait = asyncio.create_task(waiter.backend.wait_for_change(5.0, since=token))
        await producer.add_job("ping")
        assert await wait is True
        assert time.monotonic() - started < 0.5  # the fallback poll would not matter here


async def test_the_listener_listens_again_after_its_connection_is_killed(
    postgres_url: str,
) -> None:
    async with Queue(postgres_url) as waiter, Queue(postgres_url) as producer:
        waiter.backend.change_token()
        killer = await asyncpg.connect(POSTGRES_URL)

        async def listeners() -> list[int]:
            rows = await killer.fetch(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' "
                "AND datname = current_database()"
            )
            return [row["pid"] for row in rows]

        try:
            before = await eventually(listeners)
            await killer.execute(
                "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", before
            )
            await eventually(lambda: _has_new(listeners, before))
        finally:
            await killer.close()
        start = await producer.backend.latest_event_cursor()
        async with asyncio.timeout(5):
            job_id = await producer.add_job("after-restart")
            event = await _first_event(waiter, start)
        assert event.job_id == job_id


async def test_two_schemas_on_one_database_are_separate_queues(postgres_url: str) -> None:
    other = postgres_url.rsplit("=", 1)[0] + "=" + _schema_name_of(postgres_url) + "_b"
    async with Queue(postgres_url) as first, Queue(other) as second:
        await first.add_job("only-in-first")
        assert await _jobs_in(first) == 1
        assert await _jobs_in(second) == 0
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{_schema_name_of(other)}" CASCADE')
    finally:
        await conn.close()


async def _listening() -> bool:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        return bool(await conn.fetch("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"))
    finally:
        await conn.close()


async def _has_new(listeners: Callable[[], Awaitable[list[int]]], old: list[int]) -> bool:
    return bool(set(await listeners()) - set(old))


def _schema_name_of(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


def test_bad_postgres_urls_say_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="identifier"):
        parse_url("postgresql://u@h/db?schema=Bad-Name")
    with pytest.raises(ConfigError, match="pool_size"):
        parse_url("postgresql://u@h/db?pool_size=zero")
    options = parse_url("postgres://u@h:5433/db?schema=jobs&sslmode=disable")
    assert options.schema == "jobs"
    assert options.url == "postgresql+asyncpg://u@h:5433/db?sslmode=disable"


async def test_two_queues_never_claim_the_same_job(postgres_url: str) -> None:
    async with Queue(postgres_url) as one, Queue(postgres_url) as two:
        await one.add_jobs([{"job_type": "work"} for _ in range(200)])

        async def drain(queue: Queue, name: str) -> list[int]:
            got: list[int] = []
            while batch := await queue.backend.claim(
                worker_id=name, queue=None, job_types=None, limit=7, lease_seconds=30
            ):
                got.extend(job.id for job in batch)
            return got

        a, b = await asyncio.gather(drain(one, "a"), drain(two, "b"))
    assert len(a) + len(b) == 200
    assert set(a).isdisjoint(b)


async def test_the_direct_statements_recover_at_once_when_their_connections_are_cut(
    postgres_url: str,
) -> None:
    """Enqueue, claim and complete run on asyncpg pools of their own (`pg_direct`): when the
    server cuts their connections (a restart, an operator), at most the next call fails, and
    the one after it runs on a fresh connection; nothing is half-written."""
    async with Queue(postgres_url) as queue:
        for _ in range(3):  # several pooled connections, all to be cut
            await asyncio.gather(*(queue.add_job("a") for _ in range(4)))
        claimed = await queue.backend.claim(
            worker_id="w", queue=None, job_types=None, limit=1, lease_seconds=30
        )
        assert len(claimed) == 1
        killer = await asyncpg.connect(POSTGRES_URL)
        try:
            cut = await killer.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1",
                f"agentqueue {_schema(queue)}",
            )
            assert len(cut) >= 2  # the enqueue pool's and the claim pool's
        finally:
            await killer.close()
        failures = 0
        for _ in range(3):
            try:
                await queue.add_job("a")
            except BackendUnavailable:
                failures += 1
        assert failures <= 1
        for _ in range(3):
            try:
                again = await queue.backend.claim(
                    worker_id="w", queue=None, job_types=None, limit=1, lease_seconds=30
                )
            except BackendUnavailable:
                failures += 1
            else:
                assert len(again) == 1
        assert failures <= 2
        stats = await queue.stats()
        # 12 + the 3 (or 2) enqueues that returned; claimed: 1 + the claims that returned.
        assert sum(stats.totals.values()) in (14, 15)


async def test_a_write_of_this_store_wakes_its_waiters_once_not_again_by_its_notify_echo(
    postgres_url: str,
) -> None:
    async with Queue(postgres_url) as mine, Queue(postgres_url) as other:
        backend = mine.backend
        start = backend.change_token()  # starts the LISTEN connection

        async def listening() -> bool:
            # Another process's write wakes us only through NOTIFY: once it does, LISTEN is up.
            await other.add_job("b")
            return await backend.wait_for_change(0.2, since=start)

        await eventually(listening, timeout=10)
        await asyncio.sleep(0.3)  # let the NOTIFYs of those adds arrive
        before = backend.change_token()
        await mine.add_job("a")
        assert backend.change_token() == before + 1  # the local wake-up, at once
        await asyncio.sleep(0.3)  # the NOTIFY echo would arrive within milliseconds
        assert backend.change_token() == before + 1
        await other.add_job("b")
        async with asyncio.timeout(5):
            await backend.wait_for_change(5, since=before + 1)
        assert backend.change_token() > before + 1  # another's write still wakes us


async def test_an_audited_add_commits_its_jobs_and_its_record_together_or_neither(
    pg: Queue,
) -> None:
    # Jobs without keys or dependencies take the store's own pool; the record names the new
    # ids, so it is written after them in the same transaction.
    def record(actor: str) -> Callable[[list[JobId]], AuditRecord]:
        return lambda ids: AuditRecord(
            at=datetime.now(UTC),
            actor=actor,
            door="rest",
            action="add_jobs",
            result="ok",
            details={"job_ids": [int(i) for i in ids]},
        )

    origin = Origin(door="rest", actor="a")
    jobs = [{"job_type": "t", "tags": ["x"], "delay": 60}, {"job_type": "t"}]
    ids = await pg.add_jobs(jobs, audit=record("a"), origin=origin)
    [written] = await pg.list_audit()
    assert written.details == {"job_ids": [int(i) for i in ids]}
    first = await pg.get_job(ids[0])
    assert first is not None
    assert (first.tags, first.origin) == (["x"], origin)
    # An audit row the database refuses (the actor is longer than its column) undoes the jobs.
    with pytest.raises(AgentQueueError):
        await pg.add_jobs(jobs, audit=record("a" * 300), origin=origin)
    assert await _jobs_in(pg) == 2
    assert len(await pg.list_audit()) == 1
    assert len(await pg.backend.read_events(after=None, limit=10)) == 2


async def test_a_job_read_on_the_direct_pool_equals_the_one_read_through_the_engine(
    pg: Queue,
) -> None:
    # The store's own get_job runs on its asyncpg pool; a queue on a caller's engine reads the
    # same row through SQLAlchemy. Every field must come back the same both ways.
    job_id = await pg.add_job(
        "mail",
        {"to": "a", "n": [1, 2.5, None], "deep": {"é": True}},
        priority=3,
        delay=60,
        tags=["a", "b"],
        timeout=12.5,
        max_attempts=4,
        group="g1",
        dead_letter_job_type="mail.dead",
    )
    engine = create_async_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"),
        connect_args={"server_settings": {"search_path": _schema(pg)}},
    )
    try:
        async with Queue(engine) as through_engine:
            direct, portable = await pg.get_job(job_id), await through_engine.get_job(job_id)
            assert direct is not None
            assert direct == portable
            assert direct.tags == ["a", "b"]
            assert direct.payload["deep"] == {"é": True}
            assert await pg.get_job(job_id + 1000) is None
    finally:
        await engine.dispose()


async def test_an_upgraded_store_writes_events_without_the_jobs_foreign_key(pg: Queue) -> None:
    schema = _schema(pg)
    conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})

    async def event_keys() -> list[str]:
        rows = await conn.fetch(
            "SELECT conname FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid = 'aq_job_events'::regclass"
        )
        return [row["conname"] for row in rows]

    try:
        assert await event_keys() == []
        # A store at version 9 has the key of migration 0001.
        await conn.execute(
            "ALTER TABLE aq_job_events ADD CONSTRAINT aq_job_events_job_id_fkey "
            "FOREIGN KEY (job_id) REFERENCES aq_jobs (id) ON DELETE CASCADE"
        )
        await conn.execute("DELETE FROM aq_schema_migrations WHERE version = 10")
        assert await event_keys() == ["aq_job_events_job_id_fkey"]
        assert await pg.backend.migrate() == ["0010_events_without_job_key"]
        assert await event_keys() == []
        # Events are still written with their jobs, and the purge takes them with the job.
        job_id = await pg.add_job("after-upgrade")
        assert [event.type for event in await pg.get_job_events(job_id)] == ["added"]
        await pg.cancel_job(job_id)
        assert (await pg.purge_jobs()).changed == 1
        left = "SELECT count(*) FROM aq_job_events WHERE job_id = $1"
        assert await conn.fetchval(left, job_id) == 0
    finally:
        await conn.close()


async def test_the_commit_trigger_has_its_schema_written_in_also_after_an_upgrade(
    pg: Queue,
) -> None:
    from agentqueue.backends.sql.migrations import m0003_event_commits

    schema = _schema(pg)
    conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})

    async def source() -> str:
        return await conn.fetchval(
            "SELECT prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = $1 AND p.proname = 'aq_commit_events'",
            schema,
        )

    try:
        assert "EXECUTE" not in await source()
        assert f"INSERT INTO {schema}.aq_event_commits" in await source()
        # A store at version 8 has migration 0003's function, which builds its INSERT per call.
        await conn.execute(m0003_event_commits._COMMIT_FUNCTION)
        await conn.execute("DELETE FROM aq_schema_migrations WHERE version >= 9")
        assert "EXECUTE format" in await source()
        assert await pg.backend.migrate() == [
            "0009_static_commit_trigger",
            "0010_events_without_job_key",
        ]
        assert "EXECUTE" not in await source()
    finally:
        await conn.close()
    # Every commit that writes events is still numbered and announced.
    start = await pg.backend.latest_event_cursor()
    job_id = await pg.add_job("after-upgrade")
    event = await _first_event(pg, start)
    assert event.job_id == job_id
