"""Deadlines that move: `ctx.prolong` and the job type's `on_timeout` hook."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from worker_kit import fast_worker, running, wait_for_status

from agentqueue import FailureReason, JobContext, JobStatus, Queue


async def test_prolong_moves_the_deadline_of_an_async_handler(queue: Queue) -> None:
    @queue.handler("long_report", timeout=0.3)
    async def long_report(payload: dict[str, Any], ctx: JobContext) -> str:
        await asyncio.sleep(0.2)
        ctx.prolong(1.0)  # from now: the deadline is ~1.2 s after the start
        await asyncio.sleep(0.4)
        return "done"

    job_id = await queue.add_job("long_report", max_attempts=1)
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout=10)
    assert job.output == "done"


async def test_prolong_from_a_sync_handler_thread(queue: Queue) -> None:
    @queue.handler("crunch", timeout=0.3)
    def crunch(payload: dict[str, Any], ctx: JobContext) -> str:
        time.sleep(0.2)
        ctx.prolong()  # the job's own timeout again, from now
        time.sleep(0.2)
        return "crunched"

    job_id = await queue.add_job("crunch", max_attempts=1)
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout=10)
    assert job.output == "crunched"


async def test_on_timeout_can_extend_once_then_let_it_time_out(queue: Queue) -> None:
    asked: list[int] = []

    def extend_once(job: Any, ctx: JobContext) -> float | None:
        asked.append(job.id)
        return 0.3 if len(asked) == 1 else None

    @queue.handler("stuck", timeout=0.2, on_timeout=extend_once)
    async def stuck(payload: dict[str, Any]) -> None:
        await asyncio.sleep(30)

    @queue.handler("almost", timeout=0.2, on_timeout=lambda job, ctx: ctx.prolong(0.5))
    async def almost(payload: dict[str, Any]) -> str:
        await asyncio.sleep(0.35)
        return "made it"

    stuck_id = await queue.add_job("stuck", max_attempts=1)
    almost_id = await queue.add_job("almost", max_attempts=1)
    started = time.monotonic()
    async with running(fast_worker(queue)):
        timed_out = await wait_for_status(queue, stuck_id, JobStatus.FAILED, timeout=10)
        made_it = await wait_for_status(queue, almost_id, JobStatus.COMPLETED, timeout=10)
    assert timed_out.failure_reason is FailureReason.TIMEOUT
    assert asked == [stuck_id, stuck_id]
    assert time.monotonic() - started < 5
    assert made_it.output == "made it"


async def test_an_on_timeout_hook_that_raises_lets_the_attempt_time_out(queue: Queue) -> None:
    def broken(job: Any, ctx: JobContext) -> float:
        raise RuntimeError("hook bug")

    @queue.handler("stuck_too", timeout=0.2, on_timeout=broken)
    async def stuck_too(payload: dict[str, Any]) -> None:
        await asyncio.sleep(30)

    job_id = await queue.add_job("stuck_too", max_attempts=1)
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.FAILED, timeout=10)
    assert job.failure_reason is FailureReason.TIMEOUT
