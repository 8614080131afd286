"""Cancelling a running job: async handlers are interrupted, sync handlers see the flag."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from worker_kit import event_types, fast_worker, running, wait_event, wait_for_status

from agentqueue import JobContext, JobStatus, Queue


async def test_cancel_of_a_running_async_job_interrupts_its_handler(queue: Queue) -> None:
    started = asyncio.Event()
    interrupted: list[bool] = []

    @queue.handler("long")
    async def long(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            interrupted.append(ctx.cancelled)
            raise

    job_id = await queue.add_job("long", max_attempts=3)
    worker = fast_worker(queue)
    async with running(worker):
        await wait_event(started)
        requested = await queue.cancel_job(job_id)
        job = await wait_for_status(queue, job_id, JobStatus.CANCELLED, timeout=3)

    assert (requested.status, requested.cancel_requested) == (JobStatus.PROCESSING, True)
    assert interrupted == [True]
    assert job.attempts == 1
    assert job.completed_at is not None
    assert job.error_history == []
    assert await event_types(queue, job_id) == [
        "added",
        "claim",
        "cancel_requested",
        "cancel",
    ]
    assert worker.counts == {"cancel": 1}


async def test_cancel_of_a_running_sync_job_sets_the_flag_its_handler_checks(
    queue: Queue,
) -> None:
    started = threading.Event()
    seen: list[bool] = []

    @queue.handler("loop")
    def loop(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        deadline = time.monotonic() + 10
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(ctx.cancelled)
        ctx.raise_if_cancelled()

    job_id = await queue.add_job("loop")
    async with running(fast_worker(queue)):
        assert await asyncio.to_thread(started.wait, 10)
        await queue.cancel_job(job_id)
        job = await wait_for_status(queue, job_id, JobStatus.CANCELLED, timeout=3)

    assert seen == [True]
    assert job.attempts == 1
    assert job.last_error is None
    assert await event_types(queue, job_id) == [
        "added",
        "claim",
        "cancel_requested",
        "cancel",
    ]


async def test_sync_handler_that_finishes_despite_a_cancel_request_completes(
    queue: Queue,
) -> None:
    started = threading.Event()

    @queue.handler("stubborn")
    def stubborn(payload: dict[str, Any], ctx: JobContext) -> str:
        started.set()
        deadline = time.monotonic() + 10
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        return f"finished anyway (cancelled={ctx.cancelled})"

    job_id = await queue.add_job("stubborn")
    async with running(fast_worker(queue)):
        assert await asyncio.to_thread(started.wait, 10)
        await queue.cancel_job(job_id)
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout=3)

    assert job.output == "finished anyway (cancelled=True)"
    assert await event_types(queue, job_id) == [
        "added",
        "claim",
        "cancel_requested",
        "complete",
    ]


async def test_cancel_requested_before_a_failed_attempt_is_not_undone_by_a_retry(
    queue: Queue,
) -> None:
    started = threading.Event()
    fail_now = threading.Event()
    attempts: list[int] = []

    @queue.handler("doomed")
    def doomed(payload: dict[str, Any], ctx: JobContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt > 1:
            return "ran again after its cancel"
        started.set()
        assert fail_now.wait(10)
        raise RuntimeError("failed after the cancel request")

    job_id = await queue.add_job("doomed", max_attempts=3, retry_delay=0)
    try:
        async with running(fast_worker(queue)):
            assert await asyncio.to_thread(started.wait, 10)
            await queue.cancel_job(job_id)
            fail_now.set()
            job = await wait_for_status(
                queue, job_id, JobStatus.CANCELLED, JobStatus.COMPLETED, timeout=3
            )
    finally:
        fail_now.set()

    assert attempts == [1]
    assert (job.status, job.attempts) == (JobStatus.CANCELLED, 1)
    assert [e.message for e in job.error_history] == [
        "RuntimeError: failed after the cancel request"
    ]
    assert (await event_types(queue, job_id))[-1] == "cancel"


async def test_cancel_requested_before_a_shutdown_is_not_undone_by_the_release(
    queue: Queue,
) -> None:
    started = threading.Event()
    finish = threading.Event()
    attempts: list[int] = []

    @queue.handler("doomed")
    def doomed(payload: dict[str, Any], ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        started.set()
        finish.wait(10)

    job_id = await queue.add_job("doomed")
    worker = fast_worker(queue, shutdown_timeout=0)
    try:
        async with running(worker):
            assert await asyncio.to_thread(started.wait, 10)
            await queue.cancel_job(job_id)
        assert await fast_worker(queue).run(once=True) == {}
    finally:
        finish.set()

    job = await queue.get_job(job_id)
    assert job is not None
    assert attempts == [1]
    assert job.status is JobStatus.CANCELLED


async def test_cancel_requested_for_a_dead_workers_job_is_not_undone_by_the_rescue(
    queue: Queue,
) -> None:
    ran: list[int] = []

    @queue.handler("orphan")
    async def orphan(payload: dict[str, Any]) -> None:
        ran.append(1)

    job_id = await queue.add_job("orphan", max_attempts=3)
    await queue.backend.claim(
        worker_id="dead-worker", queue=None, job_types=None, limit=1, lease_seconds=0.2
    )
    await queue.cancel_job(job_id)
    async with running(fast_worker(queue, rescue_interval=0.1)):
        job = await wait_for_status(
            queue, job_id, JobStatus.CANCELLED, JobStatus.COMPLETED, timeout=5
        )

    assert ran == []
    assert (job.status, job.attempts) == (JobStatus.CANCELLED, 1)
    assert [e.reason.value for e in job.error_history] == ["lease_expired"]
