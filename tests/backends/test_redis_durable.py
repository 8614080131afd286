"""Redis-only behaviour of durable execution: cluster-safe keys, no orphan keys after a purge,
atomic token completion and memoization under concurrency, and the indexes behind them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from agentqueue import FrozenClock, JobContext, JobStatus, Queue
from agentqueue.backends.base import Lease, TokenCompletionKind
from agentqueue.backends.redis import RedisBackend
from agentqueue.errors import InvalidArgument, TokenNotFound
from agentqueue.models import FOREVER, EventType, TokenStatus
from agentqueue.testing import run_due_jobs
from tests.conftest import REDIS_URL, redis_reachable, require_server

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=3650)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
async def rq(redis_url: str, clock: FrozenClock) -> AsyncIterator[Queue]:
    async with Queue(redis_url, clock=clock) as queue:
        yield queue


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    """A plain client on the test server (for looking at keys)."""
    require_server("Redis", redis_reachable(), REDIS_URL)
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


def store_of(queue: Queue) -> RedisBackend:
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    return backend


def tag_of(queue: Queue) -> str:
    return "{" + store_of(queue).options.prefix + "}"


async def keys_of(raw: aioredis.Redis, queue: Queue) -> dict[str, str]:
    """Every key whose name mentions the queue's prefix, with its type."""
    prefix = store_of(queue).options.prefix
    found = [key async for key in raw.scan_iter(match=f"*{prefix}*", count=1000)]
    return {key: str(await raw.type(key)) for key in found}


async def claim_one(queue: Queue, job_type: str, now: datetime = T0) -> Lease:
    (job,) = await queue.backend.claim(
        worker_id="w", queue=None, job_types=[job_type], limit=1, lease_seconds=30, now=now
    )
    return Lease(job.id, job.attempts)


async def durable_lifecycle(queue: Queue, clock: FrozenClock) -> None:
    """Touch every durable key, and end every job (completed, failed, cancelled while waiting
    on a token, cancelled while sleeping): steps, sleeps, outputs, tokens with tags completed,
    expired and abandoned, idempotency keys and job tags."""
    approvals: list[str] = []

    @queue.handler("flow")
    async def flow(payload: dict[str, Any], ctx: JobContext) -> Any:
        first = await ctx.step("first", lambda: 1)
        await ctx.wait_for(60)
        ctx.set_output({"partial": first})
        return await ctx.step("second", lambda: 2)

    @queue.handler("approve")
    async def approve(payload: dict[str, Any], ctx: JobContext) -> Any:
        token = await ctx.create_token(timeout=3600, tags=["approval", "team:a"])
        await ctx.step("ask", lambda: approvals.append(token.id))
        return (await ctx.wait_for_token(token)).data

    @queue.handler("expiring")
    async def expiring(payload: dict[str, Any], ctx: JobContext) -> Any:
        token = await ctx.create_token(timeout=30, tags=["approval"])
        return (await ctx.wait_for_token(token)).ok

    @queue.handler("held")
    async def held(payload: dict[str, Any], ctx: JobContext) -> None:
        await ctx.wait_for_token(await ctx.create_token(tags=["held"]))

    @queue.handler("sleeper")
    async def sleeper(payload: dict[str, Any], ctx: JobContext) -> None:
        await ctx.wait_for(10**6)

    @queue.handler("boom")
    async def boom(payload: dict[str, Any], ctx: JobContext) -> None:
        await ctx.step("done", lambda: "x")
        raise RuntimeError("boom")

    await queue.add_jobs(
        [
            {"job_type": "flow", "tags": ["t1", "t:2"], "idempotency_key": "flow-1"},
            {"job_type": "approve", "queue": "q:1"},
            {"job_type": "expiring"},
            {"job_type": "boom", "max_attempts": 1, "idempotency_key": "boom-1"},
        ]
    )
    held_id = await queue.add_job("held", tags=["t1"])
    sleeper_id = await queue.add_job("sleeper")
    assert await run_due_jobs(queue) == {"wait": 5, "fail": 1}
    (token,) = await queue.list_tokens(job_id=held_id)
    await queue.cancel_job(held_id)
    await queue.cancel_job(sleeper_id)
    await queue.complete_token(token.id, "too late for the job")
    await queue.complete_token(approvals[0], {"approved": True})
    clock.advance(61)
    assert await run_due_jobs(queue) == {"complete": 3}
    for job in (await queue.list_jobs(limit=100)).items:
        assert job.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED), job


async def test_every_durable_key_carries_the_hash_tag_in_one_cluster_slot(
    rq: Queue, clock: FrozenClock, raw: aioredis.Redis
) -> None:
    await durable_lifecycle(rq, clock)
    found = await keys_of(raw, rq)
    tag = tag_of(rq)
    assert all(key.startswith(f"{tag}:") for key in found), found
    assert {key_slot(key.encode()) for key in found} == {key_slot(tag.encode())}
    # The durable kinds of key are all there (a table in keys.py documents each).
    kinds = {key.removeprefix(f"{tag}:").split(":")[0] for key in found}
    assert {"finished", "tokens", "token_status", "token_tag"} <= kinds
    assert any(key.endswith(":steps") for key in found)
    assert any(key.endswith(":token_steps") for key in found)
    assert any(key.startswith(f"{tag}:token:") for key in found)


async def test_purging_everything_leaves_no_key_of_a_job_or_its_tokens(
    rq: Queue, clock: FrozenClock, raw: aioredis.Redis
) -> None:
    await durable_lifecycle(rq, clock)
    await rq.publish_job_types()
    store = rq.backend
    total = 0
    while True:  # small batches: the purge is resumable
        done = await store.purge(finished_before=LATER, events_before=None, limit=2)
        total += done.jobs
        if done.jobs == 0:
            break
    assert total == 6
    assert (await store.purge(finished_before=None, events_before=LATER, limit=1000)).events == 0

    tag = tag_of(rq)
    left = {key.removeprefix(f"{tag}:"): kind for key, kind in (await keys_of(raw, rq)).items()}
    # What a store keeps whatever it holds: counters, the schema, the registry, the stream
    # and the counts of stats() (the scripts leave a count at 0 when its last job moves on).
    assert left == {
        "schema": "string",
        "next_job_id": "string",
        "next_event_id": "string",
        "events": "stream",
        "types": "hash",
        "types_updated_at": "hash",
        "counts": "hash",
    }
    assert set((await raw.hgetall(f"{tag}:counts")).values()) == {"0"}
    assert await raw.xlen(f"{tag}:events") == 0
    assert sum((await rq.stats()).totals.values()) == 0
    assert await rq.list_tokens() == []
    # The idempotency keys of purged jobs are free again (as in the SQL stores).
    again = await rq.add_job("flow", idempotency_key="flow-1")
    assert again > 6


async def test_purge_keeps_recent_jobs_and_unowned_tokens(rq: Queue, clock: FrozenClock) -> None:
    @rq.handler("short")
    async def short(payload: dict[str, Any], ctx: JobContext) -> None:
        await ctx.step("s", lambda: 1)
        await ctx.create_token(tags=["mine"])

    old = await rq.add_job("short", idempotency_key="k")
    await run_due_jobs(rq)
    standalone = await rq.create_token(tags=["mine"])
    clock.advance(days=8)
    fresh = await rq.add_job("short")
    await run_due_jobs(rq)
    now = clock.now()
    done = await rq.backend.purge(
        finished_before=now - timedelta(days=7), events_before=now - timedelta(days=30)
    )
    assert (done.jobs, done.events) == (1, 0)
    assert await rq.get_job(old) is None
    assert await rq.backend.job_events(old) == []
    assert await rq.get_steps(old) == {}
    assert await rq.list_tokens(job_id=old) == []
    assert await rq.get_steps(fresh) == {"s": 1}
    mine = await rq.list_tokens(tags=["mine"])
    assert [token.job_id for token in mine] == [fresh, None]
    assert mine[1].id == standalone.id
    assert await rq.add_job("short", idempotency_key="k") != old


async def test_old_events_are_cut_from_the_stream_head_and_each_history(
    rq: Queue, clock: FrozenClock, raw: aioredis.Redis
) -> None:
    first = await rq.add_job("x")
    second = await rq.add_job("x")
    clock.advance(days=2)
    await rq.cancel_job(first)
    store = rq.backend
    cut = clock.now() - timedelta(days=1)
    assert (await store.purge(finished_before=None, events_before=cut, limit=1)).events == 1
    assert [e.type for e in await store.job_events(first)] == [EventType.CANCEL]
    assert (await store.purge(finished_before=None, events_before=cut, limit=10)).events == 1
    assert await store.job_events(second) == []
    assert (await store.purge(finished_before=None, events_before=cut, limit=10)).events == 0
    tag = tag_of(rq)
    assert await raw.llen(f"{tag}:job:{first}:events") == 1
    assert not await raw.exists(f"{tag}:job:{second}:events")
    # The feed goes on after the cut, and new events keep their ids growing.
    (event,) = await store.read_events(after=None, limit=10)
    assert event.type is EventType.CANCEL
    third = await rq.add_job("x")
    assert [e.job_id for e in await store.read_events(after=event.cursor, limit=10)] == [third]


async def test_fifty_concurrent_completions_complete_once_and_resume_once(rq: Queue) -> None:
    store = rq.backend
    await rq.add_job("gate")
    lease = await claim_one(rq, "gate")
    token = await store.create_token(
        token_id="tok_gate", job_id=lease.job_id, step="aq:token:1", expires_at=None, tags=[]
    )
    parked = await store.suspend(worker_id="w", lease=lease, until=FOREVER, token_id=token.id)
    assert parked.suspended
    results = await asyncio.gather(*(store.complete_token(token.id, n) for n in range(50)))
    kinds = [result.kind for result in results]
    assert kinds.count(TokenCompletionKind.COMPLETED) == 1
    assert kinds.count(TokenCompletionKind.NOT_PENDING) == 49
    (winner,) = [r for r in results if r.kind is TokenCompletionKind.COMPLETED]
    assert winner.token is not None
    assert winner.resumed_job_id == lease.job_id
    assert {r.resumed_job_id for r in results if r is not winner} == {None}
    # Every loser sees the winner's data.
    assert {r.token.data for r in results if r.token is not None} == {winner.token.data}
    events = [e.type for e in await store.job_events(lease.job_id)]
    assert events.count(EventType.RESUME) == 1
    job = await rq.get_job(lease.job_id)
    assert job is not None
    assert (job.status, job.waiting_for, job.attempts) == (JobStatus.PENDING, None, 0)


async def test_concurrent_creates_of_one_job_step_make_one_token(rq: Queue) -> None:
    store = rq.backend
    job_id = await rq.add_job("x")
    made = await asyncio.gather(
        *(
            store.create_token(
                token_id=f"tok_{n}",
                job_id=job_id,
                step="aq:token:1",
                expires_at=T0 + timedelta(hours=1),
                tags=["a", "a", "b"],
                now=T0,
            )
            for n in range(50)
        )
    )
    assert len({token.id for token in made}) == 1
    assert made[0].tags == ["a", "b"]
    assert [t.id for t in await store.list_tokens(job_id=job_id)] == [made[0].id]
    assert [t.id for t in await store.list_tokens(tags=["b"])] == [made[0].id]
    # Only the winner is indexed for expiry: one token expires.
    assert await store.expire_tokens(now=T0 + timedelta(hours=2)) == [made[0].id]
    # Another step of the job gets its own token; a taken id is refused.
    other = await store.create_token(
        token_id="tok_other", job_id=job_id, step="aq:token:2", expires_at=None, tags=[]
    )
    assert other.id == "tok_other"
    with pytest.raises(InvalidArgument, match="already used"):
        await store.create_token(
            token_id="tok_other", job_id=job_id, step="aq:token:3", expires_at=None, tags=[]
        )


async def test_list_tokens_merges_indexes_newest_first_like_an_oracle(rq: Queue) -> None:
    store = rq.backend
    # Pairs share a created_at: ties go to the greater id, byte-wise ('a' after 'B').
    made = [
        await store.create_token(
            token_id=f"tok_{'aB'[n % 2]}{n:04d}",
            job_id=None,
            step=None,
            expires_at=None,
            tags=[f"t{n % 3}", *(["odd"] if n % 2 else [])],
            now=T0 + timedelta(seconds=n // 2),
        )
        for n in range(450)
    ]
    for token in made[::5]:
        await store.complete_token(token.id, {"n": token.id})
    current = [await store.get_token(token.id) for token in made]
    stored = [token for token in current if token is not None]
    ordered = sorted(stored, key=lambda t: (t.created_at, t.id.encode()), reverse=True)

    cases: list[dict[str, Any]] = [
        {},
        {"tags": ["t0", "odd"]},
        {"tags": ["t1"], "status": [TokenStatus.COMPLETED]},
        {"status": [TokenStatus.PENDING, TokenStatus.COMPLETED]},
        {"tags": ["nothing"]},
    ]
    for case in cases:
        wanted = [
            t
            for t in ordered
            if ("tags" not in case or set(t.tags) & set(case["tags"]))
            and ("status" not in case or t.status in case["status"])
        ]
        for limit in (1, 7, 1000):
            found = await store.list_tokens(limit=limit, **case)
            assert found == wanted[:limit], (case, limit)
    assert await store.list_tokens(tags=[]) == []


async def test_a_suspend_on_an_expired_token_expires_it_and_resumes_its_other_waiters(
    rq: Queue,
) -> None:
    store = rq.backend
    token = await store.create_token(
        token_id="tok_shared",
        job_id=None,
        step=None,
        expires_at=T0 + timedelta(minutes=5),
        tags=[],
        now=T0,
    )
    first_id, second_id = await rq.add_jobs([{"job_type": "a"}, {"job_type": "b"}])
    first = await claim_one(rq, "a")
    assert (await store.suspend(worker_id="w", lease=first, until=T0, token_id=token.id)).suspended
    second = await claim_one(rq, "b")
    later = T0 + timedelta(minutes=5)
    result = await store.suspend(
        worker_id="w", lease=second, until=later, token_id=token.id, now=later
    )
    assert not result.suspended
    assert result.token is not None
    assert result.token.status is TokenStatus.EXPIRED
    waiter = await rq.get_job(first_id)
    assert waiter is not None
    assert (waiter.status, waiter.waiting_for, waiter.run_at) == (JobStatus.PENDING, None, later)
    resumes = [e for e in await store.job_events(first_id) if e.type is EventType.RESUME]
    assert [e.data for e in resumes] == [{"token": "tok_shared", "expired": True}]
    running = await rq.get_job(second_id)
    assert running is not None
    assert running.status is JobStatus.PROCESSING
    with pytest.raises(TokenNotFound):
        await store.suspend(worker_id="w", lease=second, until=later, token_id="tok_missing")
    assert (await rq.get_job(second_id)).status is JobStatus.PROCESSING  # type: ignore[union-attr]


async def test_waits_are_fenced_and_resume_due_rechecks_each_job(
    rq: Queue, raw: aioredis.Redis
) -> None:
    store = rq.backend
    job_id = await rq.add_job("nap")
    lease = await claim_one(rq, "nap")
    stale = Lease(job_id, lease.attempt + 1)
    assert (await store.suspend(worker_id="w", lease=stale, until=T0)).lost
    assert not await store.save_step(worker_id="other", lease=lease, name="s", value=1)
    assert not await store.set_output(worker_id="w", lease=stale, output=1)
    assert await store.save_step(worker_id="w", lease=lease, name="s", value={"v": 1})
    assert await store.save_step(worker_id="w", lease=lease, name="s", value={"v": 2})
    assert await store.load_steps(job_id) == {"s": {"v": 1}}
    wake = T0 + timedelta(minutes=1)
    assert (await store.suspend(worker_id="w", lease=lease, until=wake)).suspended
    tag = tag_of(rq)
    assert await raw.zscore(f"{tag}:waiting", str(job_id)) is not None
    assert not await raw.exists(f"{tag}:leases")
    assert await store.resume_due(now=wake - timedelta(microseconds=1)) == []
    assert await store.resume_due(now=wake) == [job_id]
    assert await store.resume_due(now=wake) == []
    assert not await raw.exists(f"{tag}:waiting")
    (resume,) = [e for e in await store.job_events(job_id) if e.type is EventType.RESUME]
    assert resume.data == {"until": wake.isoformat()}
    types = [e.type for e in await store.job_events(job_id)]
    assert types.count(EventType.STEP) == 1


async def test_force_kill_and_waiting_for_are_stored_on_the_job(
    rq: Queue, raw: aioredis.Redis
) -> None:
    job_id = await rq.add_job("hard", timeout=5, force_kill_on_timeout=True)
    job = await rq.get_job(job_id)
    assert job is not None
    assert job.force_kill_on_timeout is True
    plain = await rq.add_job("soft")
    assert (await rq.get_job(plain)).force_kill_on_timeout is False  # type: ignore[union-attr]
    assert await raw.hget(f"{tag_of(rq)}:job:{job_id}", "force_kill_on_timeout") == "1"
    assert not await raw.hexists(f"{tag_of(rq)}:job:{plain}", "force_kill_on_timeout")
