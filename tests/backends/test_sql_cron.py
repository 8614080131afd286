"""Cron schedules on the SQL stores (SQLite file, in-memory, PostgreSQL): schedules stored and
read back exactly, due schedules found by their index, and each tick fired once, however many
schedulers race, replay it, or find the previous job still running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event

from agentqueue.backends.base import CronFire, InsertJob, Lease, Outcome, OutcomeKind
from agentqueue.backends.sql import migrations, tables
from agentqueue.backends.sql.backend import SqlBackend
from agentqueue.backends.sql.postgres import PostgresBackend
from agentqueue.backends.sql.sqlite import SqliteBackend
from agentqueue.backends.sql.tables import cron_jobs, jobs
from agentqueue.models import CronJob, CronStatus, JobOptions
from agentqueue.states import JobStatus
from tests.conftest import POSTGRES_URL, eventually, make_store_url

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _open(url: str) -> SqlBackend:
    if url.startswith("postgres"):
        return PostgresBackend.from_url(url)
    return SqliteBackend.from_url(url)


@pytest.fixture(params=["sqlite", "memory", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlBackend]:
    """A migrated SQL store of each kind."""
    backend = _open(make_store_url(request.param, request, tmp_path))
    await backend.open(migrate=True)
    yield backend
    await backend.close()


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[PostgresBackend]:
    """A migrated PostgreSQL store."""
    backend = PostgresBackend.from_url(postgres_url)
    await backend.open(migrate=True)
    yield backend
    await backend.close()


def schedule(name: str = "nightly", **changes: Any) -> CronJob:
    values: dict[str, Any] = {
        "name": name,
        "expression": "* * * * *",
        "job_type": "report",
        "payload": {"n": 1},
        "next_run_at": T0,
    }
    return CronJob(**(values | changes))


def tick_job(name: str, tick: datetime, **changes: Any) -> InsertJob:
    """The job the core enqueues for a tick: keyed by schedule and tick."""
    values: dict[str, Any] = {
        "job_type": "report",
        "queue": "default",
        "payload": {"n": 1},
        "priority": 0,
        "run_at": None,
        "delay": 0.0,
        "tags": [],
        "max_attempts": 3,
        "retry_delay": 1.0,
        "retry_backoff": False,
        "retry_delay_max": None,
        "timeout": None,
        "idempotency_key": f"cron:{name}:{tick.isoformat()}",
    }
    return InsertJob(**(values | changes))


async def fire(
    store: SqlBackend,
    tick: datetime,
    *,
    name: str = "nightly",
    next_run_at: datetime | None = None,
    now: datetime | None = None,
) -> CronFire:
    """Fire `tick` of a schedule, whose next tick is then a minute later (or `next_run_at`)."""
    return await store.fire_cron(
        name=name,
        tick=tick,
        next_run_at=next_run_at or tick + MINUTE,
        job=tick_job(name, tick),
        now=now or tick,
    )


async def stored(store: SqlBackend, name: str = "nightly") -> CronJob:
    found = await store.get_cron_job(name)
    assert found is not None
    return found


async def job_count(store: SqlBackend) -> int:
    query = sa.select(sa.func.count()).select_from(jobs)
    return await store._read(lambda conn: conn.execute(query).scalar_one())


async def claim_one(store: SqlBackend, at: datetime) -> int:
    (job,) = await store.claim(
        worker_id="w", queue=None, job_types=None, limit=1, lease_seconds=30, now=at
    )
    return job.id


async def complete(store: SqlBackend, job_id: int, at: datetime) -> None:
    job = await store.get_job(job_id)
    assert job is not None
    await store.finish(
        worker_id="w", outcomes=[Outcome(OutcomeKind.COMPLETE, Lease(job_id, job.attempts))], now=at
    )


# -- put, get, list, remove ------------------------------------------------------------------


async def test_a_schedule_is_stored_and_read_back_exactly(store: SqlBackend) -> None:
    options = JobOptions(
        queue="reports",
        priority=5,
        tags=["nightly", "billing"],
        max_attempts=7,
        retry_delay=0.1,
        retry_backoff=True,
        timeout=2.5,
        force_kill_on_timeout=None,  # set explicitly to None: still "set"
    )
    cron = schedule(
        expression="0 3 * * *",
        timezone="Europe/Berlin",
        payload={"nested": [1, 2.5, None, "é"], "flag": True},
        options=options,
        allow_overlap=True,
        dead_letter_job_type="report_failed",
    )
    put = await store.put_cron_job(cron, now=T0)
    got = await stored(store)
    for read in (put, got):
        assert read.model_dump(exclude={"created_at", "updated_at"}) == cron.model_dump(
            exclude={"created_at", "updated_at"}
        )
        assert read.options == options
        # The core applies handler defaults to the options a schedule did not set.
        assert read.options.model_fields_set == options.model_fields_set
        assert (read.created_at, read.updated_at) == (T0, T0)
        assert read.status is CronStatus.ACTIVE


async def test_default_options_and_any_payload_round_trip(store: SqlBackend) -> None:
    await store.put_cron_job(schedule("a", payload=[1, "x"]), now=T0)
    await store.put_cron_job(schedule("b", payload="just text", next_run_at=None), now=T0)
    a, b = await stored(store, "a"), await stored(store, "b")
    assert (a.payload, b.payload) == ([1, "x"], "just text")
    assert a.options == JobOptions()
    assert a.options.model_fields_set == set()
    assert b.next_run_at is None


async def test_replacing_keeps_the_history_and_creation_time(store: SqlBackend) -> None:
    await store.put_cron_job(schedule(), now=T0)
    fired = await fire(store, T0)
    later = T0 + timedelta(hours=1)
    replaced = await store.put_cron_job(
        schedule(expression="*/5 * * * *", status=CronStatus.PAUSED, next_run_at=None), now=later
    )
    assert replaced == await stored(store)
    assert (replaced.expression, replaced.status, replaced.next_run_at) == (
        "*/5 * * * *",
        CronStatus.PAUSED,
        None,
    )
    # Not taken from the replacing definition (which has none of them).
    assert (replaced.last_run_at, replaced.last_job_id) == (T0, fired.job_id)
    assert (replaced.created_at, replaced.updated_at) == (T0, later)


async def test_a_new_schedule_takes_the_history_it_is_given(store: SqlBackend) -> None:
    given = schedule(last_run_at=T0 - MINUTE, last_job_id=42, created_at=T0 - timedelta(days=1))
    put = await store.put_cron_job(given, now=T0)
    assert (put.last_run_at, put.last_job_id, put.created_at, put.updated_at) == (
        T0 - MINUTE,
        42,
        T0 - timedelta(days=1),
        T0,
    )


async def test_list_by_name_and_status_and_remove(store: SqlBackend) -> None:
    for name in ("b", "c", "a"):
        await store.put_cron_job(schedule(name), now=T0)
    await store.put_cron_job(schedule("d", status=CronStatus.PAUSED, next_run_at=None), now=T0)
    assert [c.name for c in await store.list_cron_jobs()] == ["a", "b", "c", "d"]
    assert [c.name for c in await store.list_cron_jobs(status=CronStatus.ACTIVE)] == [
        "a",
        "b",
        "c",
    ]
    assert [c.name for c in await store.list_cron_jobs(status=CronStatus.PAUSED)] == ["d"]
    assert await store.remove_cron_job("b") is True
    assert await store.remove_cron_job("b") is False
    assert await store.get_cron_job("b") is None
    assert await store.get_cron_job("nope") is None
    assert [c.name for c in await store.list_cron_jobs()] == ["a", "c", "d"]


async def test_removing_a_schedule_keeps_its_jobs(store: SqlBackend) -> None:
    await store.put_cron_job(schedule(), now=T0)
    fired = await fire(store, T0)
    assert await store.remove_cron_job("nightly")
    assert fired.job_id is not None
    assert await store.get_job(fired.job_id) is not None


# -- due schedules ---------------------------------------------------------------------------


async def test_due_schedules_are_active_ones_past_their_tick_earliest_first(
    store: SqlBackend,
) -> None:
    await store.put_cron_job(schedule("late", next_run_at=T0 + 2 * MINUTE), now=T0)
    await store.put_cron_job(schedule("early", next_run_at=T0 + MINUTE), now=T0)
    await store.put_cron_job(schedule("also-early", next_run_at=T0 + MINUTE), now=T0)
    await store.put_cron_job(schedule("exact", next_run_at=T0 + 3 * MINUTE), now=T0)
    await store.put_cron_job(schedule("future", next_run_at=T0 + 4 * MINUTE), now=T0)
    await store.put_cron_job(schedule("never", next_run_at=None), now=T0)
    # Paused: not due even with a past tick stored.
    await store.put_cron_job(schedule("paused", status=CronStatus.PAUSED), now=T0)
    due = await store.due_cron_jobs(now=T0 + 3 * MINUTE)
    assert [c.name for c in due] == ["also-early", "early", "late", "exact"]
    assert [c.name for c in await store.due_cron_jobs(now=T0 + 3 * MINUTE, limit=2)] == [
        "also-early",
        "early",
    ]
    assert await store.due_cron_jobs(now=T0) == []
    assert await store.due_cron_jobs(now=T0 + 3 * MINUTE, limit=0) == []


async def test_a_fired_schedule_is_due_again_at_its_next_tick(store: SqlBackend) -> None:
    await store.put_cron_job(schedule(), now=T0)
    await fire(store, T0)
    assert await store.due_cron_jobs(now=T0 + timedelta(seconds=59)) == []
    (due,) = await store.due_cron_jobs(now=T0 + MINUTE)
    assert due.next_run_at == T0 + MINUTE


# -- firing ----------------------------------------------------------------------------------


async def test_firing_a_tick_enqueues_its_job_and_moves_the_schedule(store: SqlBackend) -> None:
    await store.put_cron_job(schedule(), now=T0)
    token = store.change_token()
    at = T0 + timedelta(seconds=2)
    result = await fire(store, T0, now=at)
    assert result.won
    assert not result.skipped_overlap
    assert result.job_id is not None
    job = await store.get_job(result.job_id)
    assert job is not None
    assert (job.status, job.job_type, job.payload, job.run_at, job.idempotency_key) == (
        JobStatus.PENDING,
        "report",
        {"n": 1},
        at,
        f"cron:nightly:{T0.isoformat()}",
    )
    assert [e.type.value for e in await store.job_events(job.id)] == ["added"]
    cron = await stored(store)
    assert (cron.next_run_at, cron.last_run_at, cron.last_job_id, cron.updated_at) == (
        T0 + MINUTE,
        T0,
        job.id,
        at,
    )
    # Workers sleeping on the store wake up for the new job.
    assert await store.wait_for_change(0.5, since=token)


async def test_a_tick_fires_once_and_losers_change_nothing(store: SqlBackend) -> None:
    await store.put_cron_job(schedule(), now=T0)
    first = await fire(store, T0)
    before = await stored(store)
    again = await fire(store, T0, next_run_at=T0 + timedelta(hours=1))
    assert first.won
    assert again == CronFire(won=False)
    assert await stored(store) == before
    assert await job_count(store) == 1


async def test_a_paused_missing_or_finished_schedule_does_not_fire(store: SqlBackend) -> None:
    await store.put_cron_job(schedule("paused", status=CronStatus.PAUSED), now=T0)
    assert await fire(store, T0, name="paused") == CronFire(won=False)
    assert await fire(store, T0, name="missing") == CronFire(won=False)
    await store.put_cron_job(schedule("last"), now=T0)
    assert (
        await store.fire_cron(
            name="last", tick=T0, next_run_at=None, job=tick_job("last", T0), now=T0
        )
    ).won
    assert (await stored(store, "last")).next_run_at is None
    assert await fire(store, T0 + MINUTE, name="last") == CronFire(won=False)
    assert await job_count(store) == 1


async def test_a_tick_other_than_the_stored_one_does_not_fire(store: SqlBackend) -> None:
    await store.put_cron_job(schedule(next_run_at=T0 + MINUTE), now=T0)
    assert await fire(store, T0) == CronFire(won=False)
    assert await fire(store, T0 + MINUTE + timedelta(microseconds=1)) == CronFire(won=False)
    assert (await fire(store, T0 + MINUTE)).won


async def test_a_replayed_tick_gives_the_same_job(store: SqlBackend) -> None:
    await store.put_cron_job(schedule(allow_overlap=True), now=T0)
    first = await fire(store, T0)
    # The schedule is set back to the tick it already fired (a restore, an operator's put).
    await store.put_cron_job(schedule(allow_overlap=True, next_run_at=T0), now=T0 + MINUTE)
    replay = await fire(store, T0, now=T0 + MINUTE)
    assert replay == CronFire(won=True, job_id=first.job_id)
    assert await job_count(store) == 1
    assert (await stored(store)).last_job_id == first.job_id


async def test_a_replayed_tick_of_a_finished_job_gives_that_job(store: SqlBackend) -> None:
    await store.put_cron_job(schedule(), now=T0)
    first = await fire(store, T0)
    assert first.job_id is not None
    assert await claim_one(store, T0) == first.job_id
    await complete(store, first.job_id, T0)
    await store.put_cron_job(schedule(next_run_at=T0), now=T0 + MINUTE)
    assert await fire(store, T0, now=T0 + MINUTE) == CronFire(won=True, job_id=first.job_id)
    assert await job_count(store) == 1


async def test_a_tick_is_skipped_while_the_previous_job_is_active(store: SqlBackend) -> None:
    await store.put_cron_job(schedule(), now=T0)
    first = await fire(store, T0)
    assert first.job_id is not None
    t1, t2, t3, t4 = (T0 + n * MINUTE for n in range(1, 5))
    skipped = CronFire(won=True, skipped_overlap=True)
    assert await fire(store, t1) == skipped  # pending
    cron = await stored(store)
    assert (cron.next_run_at, cron.last_run_at, cron.last_job_id) == (t2, t1, first.job_id)
    assert await claim_one(store, t1) == first.job_id
    assert await fire(store, t2) == skipped  # processing
    job = await store.get_job(first.job_id)
    assert job is not None
    suspended = await store.suspend(
        worker_id="w", lease=Lease(job.id, job.attempts), until=t3, now=t2
    )
    assert suspended.suspended
    assert await fire(store, t3) == skipped  # waiting
    assert await job_count(store) == 1
    assert await store.resume_due(now=t3) == [first.job_id]
    assert await claim_one(store, t3) == first.job_id
    await complete(store, first.job_id, t3)
    fired = await fire(store, t4)
    assert fired.won
    assert not fired.skipped_overlap
    assert fired.job_id not in (None, first.job_id)
    assert (await stored(store)).last_job_id == fired.job_id


async def test_allowed_overlap_fires_while_the_previous_job_runs(store: SqlBackend) -> None:
    await store.put_cron_job(schedule(allow_overlap=True), now=T0)
    first = await fire(store, T0)
    second = await fire(store, T0 + MINUTE)
    assert second.won
    assert not second.skipped_overlap
    assert second.job_id not in (None, first.job_id)
    assert await job_count(store) == 2


async def test_a_previous_job_that_was_purged_does_not_block(store: SqlBackend) -> None:
    await store.put_cron_job(schedule(), now=T0)
    first = await fire(store, T0)
    await store._write(lambda conn: conn.execute(sa.delete(jobs).where(jobs.c.id == first.job_id)))
    fired = await fire(store, T0 + MINUTE)
    assert fired.won
    assert fired.job_id is not None
    assert not fired.skipped_overlap


async def test_now_none_reads_the_store_clock(store: SqlBackend) -> None:
    tick = datetime.now(UTC).replace(microsecond=0) - MINUTE
    put = await store.put_cron_job(schedule(next_run_at=tick))
    assert put.created_at is not None
    assert abs(put.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    (due,) = await store.due_cron_jobs()
    result = await store.fire_cron(
        name=due.name, tick=tick, next_run_at=tick + 2 * MINUTE, job=tick_job(due.name, tick)
    )
    assert result.won
    assert result.job_id is not None
    job = await store.get_job(result.job_id)
    assert job is not None
    assert abs(job.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert await store.due_cron_jobs() == []


# -- racing schedulers -----------------------------------------------------------------------


async def test_twenty_racing_schedulers_fire_a_tick_once(
    pg: PostgresBackend, postgres_url: str
) -> None:
    # Two stores (two pools, as two processes would have), ten schedulers each.
    other = PostgresBackend.from_url(postgres_url)
    await other.open()
    try:
        await pg.put_cron_job(schedule(), now=T0)
        results = await asyncio.gather(
            *(fire(store, T0) for _ in range(10) for store in (pg, other))
        )
    finally:
        await other.close()
    winners = [r for r in results if r.won]
    assert len(winners) == 1
    assert winners[0].job_id is not None
    assert [r for r in results if not r.won] == [CronFire(won=False)] * 19
    assert await job_count(pg) == 1
    assert (await stored(pg)).last_job_id == winners[0].job_id


async def test_racing_schedulers_on_one_sqlite_file_fire_a_tick_once(sqlite_url: str) -> None:
    stores = [SqliteBackend.from_url(sqlite_url) for _ in range(4)]
    for store in stores:
        await store.open(migrate=True)
    try:
        await stores[0].put_cron_job(schedule(), now=T0)
        results = await asyncio.gather(*(fire(store, T0) for _ in range(5) for store in stores))
        assert [r.won for r in results].count(True) == 1
        assert await job_count(stores[0]) == 1
    finally:
        for store in stores:
            await store.close()


async def test_a_fire_blocked_behind_a_winner_loses(pg: PostgresBackend) -> None:
    """Under READ COMMITTED the blocked update re-reads the committed row: the tick moved."""
    await pg.put_cron_job(schedule(), now=T0)
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'SET search_path TO "{pg.schema}"')
        async with conn.transaction():
            await conn.execute(
                "UPDATE aq_cron_jobs SET next_run_at = next_run_at + interval '1 minute'"
            )
            task = asyncio.create_task(fire(pg, T0))
            await eventually(lambda: _blocking(conn))
            assert not task.done()
        result = await asyncio.wait_for(task, 10)
    finally:
        await conn.close()
    assert result == CronFire(won=False)
    assert await job_count(pg) == 0


async def _blocking(conn: Any) -> bool:
    """Whether some session waits for a lock this connection holds."""
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            conn.get_server_pid(),
        )
    )


async def test_a_fire_wakes_a_worker_of_another_store(
    pg: PostgresBackend, postgres_url: str
) -> None:
    worker = PostgresBackend.from_url(postgres_url)
    await worker.open()
    try:
        await worker.wait_for_change(0.2)  # start its listener
        await pg.put_cron_job(schedule(), now=T0)
        token = worker.change_token()
        waiting = asyncio.create_task(worker.wait_for_change(5.0, since=token))
        await asyncio.sleep(0.05)
        assert (await fire(pg, T0)).won
        assert await waiting
    finally:
        await worker.close()


# -- schema ----------------------------------------------------------------------------------


async def test_upgrading_from_version_5_adds_the_schedules(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables.schema_migrations.create(conn)
        op = Operations(MigrationContext.configure(conn))
        for module in migrations.MIGRATIONS[:5]:
            module.upgrade(op)
            conn.execute(
                tables.schema_migrations.insert().values(
                    version=module.VERSION, name=module.NAME, applied_at=T0
                )
            )
    engine.dispose()
    store = SqliteBackend.from_url(url)
    try:
        assert (await store.migrate())[:1] == ["0006_cron"]
        await store.put_cron_job(schedule(), now=T0)
        assert (await fire(store, T0)).won
    finally:
        await store.close()


@contextmanager
def recorded(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """Record the SELECT statements run on `engine`, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        if statement.lstrip().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def due_with_rows(store: SqlBackend) -> None:
    for n in range(30):
        status = CronStatus.PAUSED if n % 3 else CronStatus.ACTIVE
        await store.put_cron_job(schedule(f"s{n:02d}", status=status), now=T0)


async def test_sqlite_due_query_reads_the_partial_index(sqlite_url: str) -> None:
    store = SqliteBackend.from_url(sqlite_url)
    await store.open(migrate=True)
    try:
        await due_with_rows(store)
        with recorded(store.engine) as seen:
            assert len(await store.due_cron_jobs(now=T0)) == 10
        ((statement, params),) = seen

        def plan(conn: sa.Connection) -> str:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
            return " | ".join(row[-1] for row in rows)

        found = await store._read(plan)
    finally:
        await store.close()
    assert "aq_cron_jobs_due" in found
    assert " SCAN " not in f" {found}", found


async def test_postgres_due_query_can_use_the_partial_index(pg: PostgresBackend) -> None:
    await due_with_rows(pg)
    with recorded(pg.engine.sync_engine) as seen:
        assert len(await pg.due_cron_jobs(now=T0)) == 10
    ((statement, params),) = seen

    def plan(conn: sa.Connection) -> str:
        # A table this small is read whole; without that way out, the plan shows whether
        # PostgreSQL can prove the partial index's condition from the statement.
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = conn.exec_driver_sql(f"EXPLAIN {statement}", tuple(params)).all()
        return "\n".join(row[0] for row in rows)

    found = await pg._write(plan)
    assert "aq_cron_jobs_due" in found, found


def test_the_table_has_the_columns_of_a_schedule() -> None:
    model = set(CronJob.model_fields)
    assert {c.name for c in cron_jobs.c} == model
