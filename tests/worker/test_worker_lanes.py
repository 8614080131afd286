"""Which jobs a worker takes: named queues with their own slots, job-type filters, one batch."""

from __future__ import annotations

import asyncio
from typing import Any

from worker_kit import fast_worker, running, wait_event, wait_for_status

from agentqueue import JobStatus, Queue


async def test_a_blocked_slow_queue_does_not_hold_up_the_fast_queue(queue: Queue) -> None:
    slow_started = asyncio.Event()
    release_slow = asyncio.Event()
    fast_active = 0
    fast_most = 0
    slow_runs: list[int] = []

    @queue.handler("crunch", queue="slow")
    async def crunch(payload: dict[str, int]) -> None:
        slow_runs.append(payload["n"])
        slow_started.set()
        await asyncio.wait_for(release_slow.wait(), 10)

    @queue.handler("ping", queue="fast")
    async def ping(payload: dict[str, Any]) -> None:
        nonlocal fast_active, fast_most
        fast_active += 1
        fast_most = max(fast_most, fast_active)
        try:
            await asyncio.sleep(0.05)
        finally:
            fast_active -= 1

    @queue.handler("report", queue="reports")
    async def report(payload: dict[str, Any]) -> None: ...

    slow_ids = [await queue.add_job("crunch", {"n": n}) for n in (1, 2)]
    unserved_id = await queue.add_job("report")
    fast_ids = [await queue.add_job("ping") for _ in range(12)]
    worker = fast_worker(queue, queues={"slow": 1, "fast": 5})
    async with running(worker):
        await wait_event(slow_started)
        for job_id in fast_ids:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)
        first_slow, second_slow = [await queue.get_job(job_id) for job_id in slow_ids]
        release_slow.set()
        for job_id in slow_ids:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)
        unserved = await queue.get_job(unserved_id)

    assert first_slow is not None
    assert second_slow is not None
    assert first_slow.status is JobStatus.PROCESSING
    assert (second_slow.status, second_slow.attempts) == (JobStatus.PENDING, 0)
    assert slow_runs == [1, 2]
    assert fast_most == 5
    assert unserved is not None
    assert (unserved.status, unserved.attempts) == (JobStatus.PENDING, 0)


async def test_worker_with_a_job_type_filter_leaves_other_types_pending(queue: Queue) -> None:
    ran: list[str] = []

    @queue.handler("wanted")
    async def wanted(payload: dict[str, Any]) -> None:
        ran.append("wanted")

    @queue.handler("other")
    async def other(payload: dict[str, Any]) -> None:
        ran.append("other")

    # The filtered-out job comes first and has the higher priority.
    other_id = await queue.add_job("other", priority=10)
    wanted_ids = [await queue.add_job("wanted") for _ in range(3)]
    async with running(fast_worker(queue, job_types=["wanted"])):
        for job_id in wanted_ids:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)
        left = await queue.get_job(other_id)

    assert ran == ["wanted"] * 3
    assert left is not None
    assert (left.status, left.attempts) == (JobStatus.PENDING, 0)


async def test_run_once_runs_one_batch_and_returns_the_outcome_counts(queue: Queue) -> None:
    @queue.handler("ok")
    async def ok(payload: dict[str, Any]) -> str:
        return "ok"

    @queue.handler("boom")
    async def boom(payload: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    boom_id = await queue.add_job("boom", priority=5, max_attempts=1)
    ok_ids = [await queue.add_job("ok") for _ in range(4)]
    counts = await asyncio.wait_for(fast_worker(queue, concurrency=3).run(once=True), 10)

    assert counts == {"fail": 1, "complete": 2}
    jobs = [await queue.get_job(job_id) for job_id in [boom_id, *ok_ids]]
    assert [job.status if job else None for job in jobs] == [
        JobStatus.FAILED,
        JobStatus.COMPLETED,
        JobStatus.COMPLETED,
        JobStatus.PENDING,
        JobStatus.PENDING,
    ]


async def test_run_once_on_an_empty_queue_returns_no_counts(queue: Queue) -> None:
    @queue.handler("ok")
    async def ok(payload: dict[str, Any]) -> None: ...

    counts = await asyncio.wait_for(fast_worker(queue).run(once=True), 10)

    assert counts == {}
