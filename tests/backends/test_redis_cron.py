"""Cron schedules on the Redis store: schedules stored and read back exactly, Cluster-safe keys
that a removal leaves none of, and each tick fired once however many schedulers race or replay
it, its job stored exactly as `insert_jobs` stores one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from agentqueue.backends.base import CronFire, InsertJob, Lease, Outcome, OutcomeKind
from agentqueue.backends.redis import RedisBackend
from agentqueue.models import CronJob, CronStatus, JobFilter, JobOptions, ListOrder
from agentqueue.states import JobStatus
from tests.conftest import REDIS_URL

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend.from_url(redis_url)
    await backend.open(migrate=True)
    yield backend
    await backend.close()


@pytest.fixture
async def raw(store: RedisBackend) -> AsyncIterator[aioredis.Redis]:
    """A plain client on the test server (for looking at keys)."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


def tag_of(store: RedisBackend) -> str:
    return "{" + store.options.prefix + "}"


async def keys_of(raw: aioredis.Redis, store: RedisBackend) -> set[str]:
    """Every key whose name mentions the store's prefix."""
    return {key async for key in raw.scan_iter(match=f"*{store.options.prefix}*", count=1000)}


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
    store: RedisBackend,
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


async def stored(store: RedisBackend, name: str = "nightly") -> CronJob:
    found = await store.get_cron_job(name)
    assert found is not None
    return found


async def job_count(store: RedisBackend) -> int:
    return sum((await store.stats()).totals.values())


async def claim_one(store: RedisBackend, at: datetime) -> int:
    (job,) = await store.claim(
        worker_id="w", queue=None, job_types=None, limit=1, lease_seconds=30, now=at
    )
    return job.id


async def complete(store: RedisBackend, job_id: int, at: datetime) -> None:
    job = await store.get_job(job_id)
    assert job is not None
    await store.finish(
        worker_id="w", outcomes=[Outcome(OutcomeKind.COMPLETE, Lease(job_id, job.attempts))], now=at
    )


# -- keys ------------------------------------------------------------------------------------


async def test_every_cron_key_carries_the_hash_tag_in_one_cluster_slot(
    store: RedisBackend, raw: aioredis.Redis
) -> None:
    await store.put_cron_job(schedule("a:b"), now=T0)  # a name with the separator in it
    await store.put_cron_job(schedule("paused", status=CronStatus.PAUSED), now=T0)
    assert (await fire(store, T0, name="a:b")).won
    found = await keys_of(raw, store)
    tag = tag_of(store)
    assert all(key.startswith(f"{tag}:") for key in found), found
    assert {key_slot(key.encode()) for key in found} == {key_slot(tag.encode())}
    assert {f"{tag}:cron:a:b", f"{tag}:cron:paused", f"{tag}:crons", f"{tag}:cron_due"} <= found
    assert await raw.type(f"{tag}:cron:a:b") == "hash"
    assert await raw.zrange(f"{tag}:crons", 0, -1) == ["a:b", "paused"]
    assert await raw.zrange(f"{tag}:cron_due", 0, -1, withscores=True) == [
        ("a:b", float(int((T0 + MINUTE).timestamp()) * 1_000_000))
    ]


async def test_removing_schedules_leaves_no_key_behind(
    store: RedisBackend, raw: aioredis.Redis
) -> None:
    before = await keys_of(raw, store)
    await store.put_cron_job(schedule("a", dead_letter_job_type="dead"), now=T0)
    await store.put_cron_job(schedule("b", status=CronStatus.PAUSED, next_run_at=None), now=T0)
    await store.put_cron_job(schedule("c", next_run_at=None), now=T0)
    assert await keys_of(raw, store) > before
    for name in ("a", "b", "c"):
        assert await store.remove_cron_job(name) is True
        assert await store.remove_cron_job(name) is False
    assert await keys_of(raw, store) == before
    assert await store.list_cron_jobs() == []


async def test_removing_a_fired_schedule_keeps_its_job_and_nothing_else(
    store: RedisBackend, raw: aioredis.Redis
) -> None:
    await store.put_cron_job(schedule(), now=T0)
    fired = await fire(store, T0)
    assert fired.job_id is not None
    assert await store.remove_cron_job("nightly")
    assert await store.get_job(fired.job_id) is not None
    tag = tag_of(store)
    assert not [key for key in await keys_of(raw, store) if key.startswith(f"{tag}:cron")]


# -- put, get, list --------------------------------------------------------------------------


async def test_a_schedule_is_stored_and_read_back_exactly(store: RedisBackend) -> None:
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
        payload={"nested": [1, 2.5, None, "é"], "flag": True, "empty": []},
        options=options,
        allow_overlap=True,
        dead_letter_job_type="report_failed",
    )
    put = await store.put_cron_job(cron, now=T0)
    got = await stored(store)
    (listed,) = await store.list_cron_jobs()
    for read in (put, got, listed):
        assert read.model_dump(exclude={"created_at", "updated_at"}) == cron.model_dump(
            exclude={"created_at", "updated_at"}
        )
        assert read.options == options
        assert read.options.model_fields_set == options.model_fields_set
        assert (read.created_at, read.updated_at) == (T0, T0)
    await store.put_cron_job(schedule("plain", payload="text", next_run_at=None), now=T0)
    plain = await stored(store, "plain")
    assert (plain.payload, plain.next_run_at, plain.dead_letter_job_type) == ("text", None, None)
    assert plain.options.model_fields_set == set()


async def test_replacing_keeps_the_history_and_creation_time_only(store: RedisBackend) -> None:
    await store.put_cron_job(schedule(dead_letter_job_type="dead"), now=T0)
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
    assert replaced.dead_letter_job_type is None  # a field the new definition leaves unset
    assert (replaced.last_run_at, replaced.last_job_id) == (T0, fired.job_id)
    assert (replaced.created_at, replaced.updated_at) == (T0, later)
    assert await store.due_cron_jobs(now=later) == []  # paused: out of the due set


async def test_a_new_schedule_takes_the_history_it_is_given(store: RedisBackend) -> None:
    given = schedule(last_run_at=T0 - MINUTE, last_job_id=42, created_at=T0 - timedelta(days=1))
    put = await store.put_cron_job(given, now=T0)
    assert (put.last_run_at, put.last_job_id, put.created_at, put.updated_at) == (
        T0 - MINUTE,
        42,
        T0 - timedelta(days=1),
        T0,
    )


async def test_due_schedules_are_active_ones_past_their_tick_earliest_first(
    store: RedisBackend,
) -> None:
    await store.put_cron_job(schedule("late", next_run_at=T0 + 2 * MINUTE), now=T0)
    await store.put_cron_job(schedule("early", next_run_at=T0 + MINUTE), now=T0)
    await store.put_cron_job(schedule("also-early", next_run_at=T0 + MINUTE), now=T0)
    await store.put_cron_job(schedule("exact", next_run_at=T0 + 3 * MINUTE), now=T0)
    await store.put_cron_job(schedule("future", next_run_at=T0 + 4 * MINUTE), now=T0)
    await store.put_cron_job(schedule("never", next_run_at=None), now=T0)
    await store.put_cron_job(schedule("paused", status=CronStatus.PAUSED), now=T0)
    due = await store.due_cron_jobs(now=T0 + 3 * MINUTE)
    assert [c.name for c in due] == ["also-early", "early", "late", "exact"]
    assert due[0] == await stored(store, "also-early")
    assert [c.name for c in await store.due_cron_jobs(now=T0 + 3 * MINUTE, limit=2)] == [
        "also-early",
        "early",
    ]
    assert await store.due_cron_jobs(now=T0) == []
    assert await store.due_cron_jobs(now=T0 + 3 * MINUTE, limit=0) == []
    assert [c.name for c in await store.list_cron_jobs(status=CronStatus.PAUSED)] == ["paused"]


async def test_now_none_reads_the_server_clock(store: RedisBackend) -> None:
    tick = datetime.now(UTC).replace(microsecond=0) - MINUTE
    put = await store.put_cron_job(schedule(next_run_at=tick))
    assert put.created_at is not None
    assert abs(put.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    (due,) = await store.due_cron_jobs()
    result = await store.fire_cron(
        name=due.name, tick=tick, next_run_at=tick + 2 * MINUTE, job=tick_job(due.name, tick)
    )
    assert result.job_id is not None
    job = await store.get_job(result.job_id)
    assert job is not None
    assert abs(job.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert await store.due_cron_jobs() == []


# -- firing ----------------------------------------------------------------------------------


async def test_twenty_racing_schedulers_fire_a_tick_once(
    store: RedisBackend, redis_url: str
) -> None:
    # Four stores (four pools, as four processes would have), five schedulers each.
    others = [RedisBackend.from_url(redis_url) for _ in range(3)]
    for other in others:
        await other.open()
    try:
        await store.put_cron_job(schedule(), now=T0)
        results = await asyncio.gather(*(fire(s, T0) for _ in range(5) for s in (store, *others)))
    finally:
        for other in others:
            await other.close()
    winners = [r for r in results if r.won]
    assert len(winners) == 1
    assert winners[0].job_id is not None
    assert not winners[0].skipped_overlap
    assert [r for r in results if not r.won] == [CronFire(won=False)] * 19
    assert await job_count(store) == 1
    jobs = await store.list_jobs(JobFilter(), limit=10, after_id=None, order=ListOrder.NEWEST)
    assert [job.id for job in jobs] == [winners[0].job_id]
    cron = await stored(store)
    assert (cron.last_job_id, cron.last_run_at, cron.next_run_at) == (
        winners[0].job_id,
        T0,
        T0 + MINUTE,
    )


async def test_a_fired_job_is_stored_exactly_as_insert_jobs_stores_one(
    store: RedisBackend, raw: aioredis.Redis
) -> None:
    await store.put_cron_job(schedule(allow_overlap=True), now=T0)
    options: dict[str, Any] = {
        "queue": "reports",
        "priority": 4,
        "tags": ["cron", "nightly"],
        "timeout": 2.5,
        "retry_delay_max": 60.0,
        "force_kill_on_timeout": True,
    }
    fired = await store.fire_cron(
        name="nightly",
        tick=T0,
        next_run_at=T0 + MINUTE,
        job=tick_job("nightly", T0, **options),
        now=T0,
    )
    (inserted,) = await store.insert_jobs(
        [tick_job("nightly", T0, **options, idempotency_key="other")], now=T0
    )
    assert fired.job_id is not None
    tag = tag_of(store)
    a = await raw.hgetall(f"{tag}:job:{fired.job_id}")
    b = await raw.hgetall(f"{tag}:job:{inserted.id}")
    different = {"id", "idempotency_key"}
    assert {k: v for k, v in a.items() if k not in different} == {
        k: v for k, v in b.items() if k not in different
    }
    assert set(a) == set(b)

    # In the same indexes: every sorted set holds both jobs or neither (ids, ready members).
    def holds(members: list[str], job_id: int) -> bool:
        return str(job_id) in members or any(m.endswith(f":{job_id:016d}") for m in members)

    zsets = [key for key in await keys_of(raw, store) if await raw.type(key) == "zset"]
    held = {key: [str(m) for m in await raw.zrange(key, 0, -1)] for key in zsets}
    assert {key for key, members in held.items() if holds(members, fired.job_id)} == {
        key for key, members in held.items() if holds(members, inserted.id)
    }
    assert f"{tag}:ready:qt:7:reports:report" in held
    assert (await store.stats()).by_type["report"][JobStatus.PENDING] == 2
    assert [e.type for e in await store.job_events(fired.job_id)] == ["added"]
    claimed = await store.claim(
        worker_id="w", queue="reports", job_types=["report"], limit=5, lease_seconds=30, now=T0
    )
    assert {job.id for job in claimed} == {fired.job_id, inserted.id}


async def test_a_fire_wakes_a_worker_of_another_store(store: RedisBackend, redis_url: str) -> None:
    worker = RedisBackend.from_url(redis_url)
    await worker.open()
    try:
        await worker.wait_for_change(0.2)  # start its watcher
        await store.put_cron_job(schedule(), now=T0)
        token = worker.change_token()
        waiting = asyncio.create_task(worker.wait_for_change(5.0, since=token))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # a put writes no event: nothing to wake for
        local = store.change_token()
        assert (await fire(store, T0)).won
        assert await waiting
        assert await store.wait_for_change(0.5, since=local)  # and this process's waiters
    finally:
        await worker.close()


async def test_a_tick_fires_once_and_losers_change_nothing(store: RedisBackend) -> None:
    await store.put_cron_job(schedule(), now=T0)
    first = await fire(store, T0)
    before = await stored(store)
    again = await fire(store, T0, next_run_at=T0 + timedelta(hours=1))
    assert first.won
    assert again == CronFire(won=False)
    assert await stored(store) == before
    assert await job_count(store) == 1


async def test_a_paused_missing_finished_or_moved_schedule_does_not_fire(
    store: RedisBackend,
) -> None:
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
    assert await store.due_cron_jobs(now=T0 + timedelta(days=365)) == []
    assert await fire(store, T0 + MINUTE, name="last") == CronFire(won=False)
    await store.put_cron_job(schedule("later", next_run_at=T0 + MINUTE), now=T0)
    assert await fire(store, T0, name="later") == CronFire(won=False)
    micro = T0 + MINUTE + timedelta(microseconds=1)
    assert await fire(store, micro, name="later") == CronFire(won=False)
    assert (await fire(store, T0 + MINUTE, name="later")).won
    assert await job_count(store) == 2


async def test_a_replayed_tick_gives_the_same_job(store: RedisBackend) -> None:
    await store.put_cron_job(schedule(allow_overlap=True), now=T0)
    first = await fire(store, T0)
    assert first.job_id is not None
    # The schedule is set back to the tick it already fired (a restore, an operator's put).
    await store.put_cron_job(schedule(allow_overlap=True, next_run_at=T0), now=T0 + MINUTE)
    replay = await fire(store, T0, now=T0 + MINUTE)
    assert replay == CronFire(won=True, job_id=first.job_id)
    assert await job_count(store) == 1
    assert [e.type for e in await store.job_events(first.job_id)] == ["added"]
    assert (await stored(store)).last_job_id == first.job_id
    # Finished meanwhile: still that job, not a new one.
    assert await claim_one(store, T0 + MINUTE) == first.job_id
    await complete(store, first.job_id, T0 + MINUTE)
    await store.put_cron_job(schedule(next_run_at=T0), now=T0 + 2 * MINUTE)
    assert await fire(store, T0, now=T0 + 2 * MINUTE) == CronFire(won=True, job_id=first.job_id)
    assert await job_count(store) == 1


async def test_a_tick_is_skipped_while_the_previous_job_is_active(store: RedisBackend) -> None:
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


async def test_a_previous_job_that_was_purged_does_not_block(store: RedisBackend) -> None:
    await store.put_cron_job(schedule(last_job_id=10**9), now=T0)  # no such job
    first = await fire(store, T0)
    assert first.job_id is not None
    assert await claim_one(store, T0) == first.job_id
    await complete(store, first.job_id, T0)
    purged = await store.purge(finished_before=T0 + MINUTE, events_before=None)
    assert purged.jobs == 1
    fired = await fire(store, T0 + MINUTE)
    assert fired.won
    assert fired.job_id not in (None, first.job_id)
