"""Acks that travel with the next claim (`FinishesWithClaim`, SQLite) and the
PostgreSQL statistics refresh that keeps the claim on its index."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agentqueue import BackendUnavailable, ErrorRecord, FailureReason, FrozenClock, Job, Queue
from agentqueue.backends.base import (
    FinishesWithClaim,
    Lease,
    Outcome,
    OutcomeKind,
    RefreshesStatistics,
)
from agentqueue.states import JobStatus
from tests.conftest import eventually, make_store_url
from tests.worker.worker_kit import fast_worker, running

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "memory"])
def sqlite_url_of_kind(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The stores that declare `FinishesWithClaim` (the declaration is tested below)."""
    return make_store_url(request.param, request, tmp_path)


@pytest.fixture
async def frozen(sqlite_url_of_kind: str) -> Any:
    async with Queue(sqlite_url_of_kind, clock=FrozenClock(T0)) as opened:
        yield opened


@pytest.fixture
async def sqlite_queue(sqlite_url_of_kind: str) -> Any:
    async with Queue(sqlite_url_of_kind) as opened:
        yield opened


async def write_with_claim(
    queue: Queue, outcomes: list[Outcome], *, limit: int
) -> tuple[set[int], list[Job]]:
    """The worker's call: outcomes and the next claim in one transaction."""
    store = queue.backend
    assert isinstance(store, FinishesWithClaim)
    return await store.finish_and_claim(
        worker_id="w1",
        outcomes=outcomes,
        queue=None,
        job_types=None,
        limit=limit,
        lease_seconds=30,
        now=queue.now(),
    )


async def claim(queue: Queue, limit: int) -> list[Job]:
    return await queue.backend.claim(
        worker_id="w1", queue=None, job_types=None, limit=limit, lease_seconds=30, now=queue.now()
    )


async def test_sqlite_declares_it_and_the_server_stores_do_not(
    queue: Queue, store_url: str
) -> None:
    # On PostgreSQL and Redis the claim and the acks run on separate connections at once,
    # which measured faster than one combined call; SQLite's writes share one thread anyway.
    kind = store_url.split(":", 1)[0]
    expected = kind in ("sqlite", "memory")
    assert isinstance(queue.backend, FinishesWithClaim) is expected


async def test_outcomes_are_written_and_the_next_jobs_claimed_in_one_call(frozen: Queue) -> None:
    first = await frozen.add_jobs([{"job_type": "j", "payload": {"n": n}} for n in range(3)])
    later = await frozen.add_jobs([{"job_type": "j", "payload": {"n": n}} for n in range(3, 6)])
    held = await claim(frozen, 3)
    assert [job.id for job in held] == first
    outcomes = [
        Outcome(OutcomeKind.COMPLETE, Lease(held[0].id, 1), output={"r": 0}),
        Outcome(OutcomeKind.COMPLETE, Lease(held[1].id, 1), output={"r": 1}),
        Outcome(OutcomeKind.COMPLETE, Lease(held[2].id, 9), output={"r": 2}),  # a lost lease
    ]
    lost, jobs = await write_with_claim(frozen, outcomes, limit=5)
    assert lost == {held[2].id}
    assert [job.id for job in jobs] == later
    assert {job.status for job in jobs} == {JobStatus.PROCESSING}
    for job_id, output in ((held[0].id, {"r": 0}), (held[1].id, {"r": 1})):
        done = await frozen.get_job(job_id)
        assert done is not None
        assert (done.status, done.output, done.completed_at) == (JobStatus.COMPLETED, output, T0)
        types = [event.type for event in await frozen.get_job_events(job_id)]
        assert types.count("complete") == 1
    untouched = await frozen.get_job(held[2].id)
    assert untouched is not None
    assert untouched.status is JobStatus.PROCESSING
    claimed_events = [event.type for event in await frozen.get_job_events(later[0])]
    assert claimed_events[-1] == "claim"


async def test_retries_and_jobs_with_dependents_go_through_it_too(frozen: Queue) -> None:
    parent, flaky = await frozen.add_jobs([{"job_type": "j"}, {"job_type": "j"}])
    child = await frozen.add_job("j", depends_on=[parent])
    held = await claim(frozen, 2)
    assert [job.id for job in held] == [parent, flaky]

    retry = Outcome(
        OutcomeKind.RETRY,
        Lease(flaky, 1),
        error=ErrorRecord(attempt=1, at=T0, reason=FailureReason.HANDLER_ERROR, message="boom"),
        retry_in=60,
    )
    lost, jobs = await write_with_claim(
        frozen, [Outcome(OutcomeKind.COMPLETE, Lease(parent, 1)), retry], limit=5
    )
    assert lost == set()
    done = await frozen.get_job(parent)
    again = await frozen.get_job(flaky)
    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert again is not None
    assert (again.status, again.last_error, again.run_at) == (
        JobStatus.PENDING,
        "boom",
        T0 + timedelta(seconds=60),
    )
    # The child became claimable when its prerequisite completed: this call or the next.
    claimed = [job.id for job in jobs] or [job.id for job in await claim(frozen, 5)]
    assert claimed == [child]


async def test_a_busy_worker_sends_its_acks_with_its_claims(sqlite_queue: Queue) -> None:
    queue = sqlite_queue
    store = queue.backend
    assert isinstance(store, FinishesWithClaim)
    calls: Counter[str] = Counter()
    original = store.finish_and_claim

    async def counted(**kwargs: Any) -> Any:
        calls["with acks"] += 1
        calls["outcomes"] += len(kwargs["outcomes"])
        return await original(**kwargs)

    store.finish_and_claim = counted  # type: ignore[method-assign]

    @queue.handler("quick")
    async def quick(payload: dict[str, Any]) -> int:
        return int(payload["n"])

    ids = await queue.add_jobs([{"job_type": "quick", "payload": {"n": n}} for n in range(300)])
    async with running(fast_worker(queue, concurrency=4)):
        await wait_all_completed(queue, ids)
    assert calls["with acks"] > 0, "no claim carried outcomes"
    assert calls["outcomes"] > 0
    for job_id in ids[:20]:
        types = [event.type for event in await queue.get_job_events(job_id)]
        assert types.count("complete") == 1


async def test_outcomes_of_a_failed_combined_call_are_written_later_once(
    sqlite_queue: Queue,
) -> None:
    queue = sqlite_queue
    store = queue.backend
    assert isinstance(store, FinishesWithClaim)
    original = store.finish_and_claim
    failures = 0

    async def failing_once(**kwargs: Any) -> Any:
        nonlocal failures
        if kwargs["outcomes"] and failures < 2:
            failures += 1  # refused before it reached the store: nothing was written
            raise BackendUnavailable("injected: the store went away for a moment")
        return await original(**kwargs)

    store.finish_and_claim = failing_once  # type: ignore[method-assign]

    @queue.handler("quick")
    async def quick(payload: dict[str, Any]) -> int:
        return int(payload["n"])

    ids = await queue.add_jobs([{"job_type": "quick", "payload": {"n": n}} for n in range(60)])
    async with running(fast_worker(queue, concurrency=4)):
        await wait_all_completed(queue, ids)
    assert failures == 2
    for job_id in ids:
        job = await queue.get_job(job_id)
        assert job is not None
        assert (job.status, job.attempts, job.output) == (JobStatus.COMPLETED, 1, job_id - ids[0])
        types = [event.type for event in await queue.get_job_events(job_id)]
        assert types.count("complete") == 1


async def wait_all_completed(queue: Queue, ids: list[int], timeout: float = 30) -> None:
    async def all_completed() -> bool:
        return (await queue.stats()).totals.get(JobStatus.COMPLETED, 0) == len(ids)

    await eventually(all_completed, timeout=timeout, interval=0.02)


async def test_postgres_refreshes_stale_statistics_so_the_claim_uses_its_index(
    postgres_url: str,
) -> None:
    async with Queue(postgres_url) as queue:
        store = queue.backend
        assert isinstance(store, RefreshesStatistics)
        await queue.add_jobs([{"job_type": "j"} for _ in range(2500)])
        assert "aq_jobs" in await store.refresh_statistics()
        assert await store.refresh_statistics() == []  # looked a moment ago: no second look
        await queue.add_jobs([{"job_type": "j"} for _ in range(2500)])
        # A backend flushes its change counters to pg_stat at most once a second; one that
        # goes idle within a second of its last flush waits up to 10 s (PostgreSQL's
        # PGSTAT_IDLE_INTERVAL). The next look (10 s later in production, at once here) then
        # finds the table changed by more than 1,000 rows + 10%.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            store._statistics_checked_at = float("-inf")  # pyright: ignore
            if "aq_jobs" in await store.refresh_statistics():
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("5,000 new rows never made the statistics of aq_jobs stale")
        engine = store.engine  # pyright: ignore[reportAttributeAccessIssue]
        schema = store.schema  # pyright: ignore[reportAttributeAccessIssue]
        async with engine.connect() as conn:
            analyzed = await conn.execute(
                sa.text(
                    "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                    "WHERE schemaname = :schema AND relname = 'aq_jobs'"
                ),
                {"schema": schema},
            )
            assert analyzed.scalar_one() is True
            await conn.execute(sa.text(f'SET search_path TO "{schema}"'))
            plan = await conn.execute(
                sa.text(
                    "EXPLAIN SELECT id FROM aq_jobs WHERE status = 'pending' AND run_at <= now() "
                    "ORDER BY priority DESC, run_at, id LIMIT 30 FOR UPDATE SKIP LOCKED"
                )
            )
            text = "\n".join(row[0] for row in plan)
        assert "aq_jobs_claim_any" in text, text
