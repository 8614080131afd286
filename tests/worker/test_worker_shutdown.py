"""Stopping a worker: in-flight jobs finish, or are released without using an attempt."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from worker_kit import event_types, fast_worker, running, wait_for_status

from agentqueue import JobContext, JobStatus, Queue


async def test_stop_lets_in_flight_jobs_finish_and_claims_nothing_new(queue: Queue) -> None:
    started: list[int] = []
    all_started = asyncio.Event()
    interrupted: list[int] = []

    @queue.handler("work")
    async def work(payload: dict[str, int], ctx: JobContext) -> int:
        started.append(payload["n"])
        if len(started) == 3:
            all_started.set()
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            interrupted.append(payload["n"])
            raise
        return payload["n"]

    ids = [await queue.add_job("work", {"n": n}) for n in range(5)]
    worker = fast_worker(queue, concurrency=3, shutdown_timeout=10)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(all_started.wait(), 10)
        worker.request_stop()
        counts = await asyncio.wait_for(task, 10)
    finally:
        worker.request_stop(force=True)
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)

    jobs = [await queue.get_job(job_id) for job_id in ids]
    assert interrupted == []
    assert counts == {"complete": 3}
    assert [(job.status, job.output) for job in jobs[:3] if job] == [
        (JobStatus.COMPLETED, 0),
        (JobStatus.COMPLETED, 1),
        (JobStatus.COMPLETED, 2),
    ]
    assert [(job.status, job.attempts) for job in jobs[3:] if job] == [
        (JobStatus.PENDING, 0),
        (JobStatus.PENDING, 0),
    ]


async def test_job_still_running_at_the_shutdown_timeout_is_released_with_its_attempt(
    queue: Queue,
) -> None:
    started = asyncio.Event()
    interrupted: list[int] = []

    @queue.handler("endless")
    async def endless(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            interrupted.append(ctx.attempt)
            raise

    job_id = await queue.add_job("endless", max_attempts=1)
    worker = fast_worker(queue, shutdown_timeout=0.3)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        stop_at = time.monotonic()
        worker.request_stop()
        counts = await asyncio.wait_for(task, 10)
        stopped_after = time.monotonic() - stop_at
    finally:
        worker.request_stop(force=True)
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)

    job = await queue.get_job(job_id)
    assert job is not None
    assert 0.3 <= stopped_after < 2, f"run() returned {stopped_after:.2f} s after the stop"
    assert interrupted == [1]
    assert counts == {"release": 1}
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
    assert (job.locked_by, job.lease_expires_at) == (None, None)
    assert job.error_history == []
    assert job.run_at <= job.updated_at
    events = await queue.get_job_events(job_id)
    assert [e.type.value for e in events] == ["added", "claim", "release"]
    assert events[-1].status is JobStatus.PENDING


async def test_released_job_is_taken_at_once_by_the_next_worker_as_a_first_attempt(
    queue: Queue,
) -> None:
    started = asyncio.Event()
    attempts: list[int] = []

    @queue.handler("resumable")
    async def resumable(payload: dict[str, Any], ctx: JobContext) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) == 1:
            started.set()
            await asyncio.sleep(30)
        return "second worker"

    job_id = await queue.add_job("resumable", max_attempts=1)
    first = fast_worker(queue, shutdown_timeout=0.1)
    async with running(first):
        await asyncio.wait_for(started.wait(), 10)
    # The lease would still be valid for 2 s: the release, not a rescue, makes it runnable.
    counts = await asyncio.wait_for(fast_worker(queue).run(once=True), 10)

    job = await queue.get_job(job_id)
    assert job is not None
    assert counts == {"complete": 1}
    assert attempts == [1, 1]
    assert (job.status, job.attempts, job.output) == (JobStatus.COMPLETED, 1, "second worker")


async def test_second_stop_request_releases_in_flight_jobs_at_once(queue: Queue) -> None:
    started = asyncio.Event()

    @queue.handler("endless")
    async def endless(payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(30)

    job_id = await queue.add_job("endless")
    worker = fast_worker(queue, shutdown_timeout=30)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        worker.request_stop()
        await asyncio.sleep(0)  # the first request is draining: give it one turn of the loop
        stop_at = time.monotonic()
        worker.request_stop()
        counts = await asyncio.wait_for(task, 5)
        stopped_after = time.monotonic() - stop_at
    finally:
        worker.request_stop(force=True)
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)

    assert stopped_after < 1.0
    assert counts == {"release": 1}
    assert await event_types(queue, job_id) == ["added", "claim", "release"]


async def test_forced_stop_releases_every_running_job(queue: Queue) -> None:
    started = 0
    all_started = asyncio.Event()

    @queue.handler("endless")
    async def endless(payload: dict[str, Any]) -> None:
        nonlocal started
        started += 1
        if started == 4:
            all_started.set()
        await asyncio.sleep(30)

    ids = [await queue.add_job("endless") for _ in range(4)]
    worker = fast_worker(queue, concurrency=4, shutdown_timeout=30)
    async with running(worker, stop_within=5):
        await asyncio.wait_for(all_started.wait(), 10)
        worker.request_stop(force=True)

    jobs = [await queue.get_job(job_id) for job_id in ids]
    assert worker.counts == {"release": 4}
    assert [(job.status, job.attempts) for job in jobs if job] == [(JobStatus.PENDING, 0)] * 4


async def test_stopped_worker_leaves_no_job_processing(queue: Queue) -> None:
    @queue.handler("mixed")
    async def mixed(payload: dict[str, float]) -> None:
        await asyncio.sleep(payload["seconds"])

    ids = [
        await queue.add_job("mixed", {"seconds": seconds}) for seconds in (0.01, 0.05, 0.1, 5, 5, 5)
    ]
    worker = fast_worker(queue, concurrency=6, shutdown_timeout=0.5)
    async with running(worker):
        for job_id in ids[:3]:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)
        for job_id in ids[3:]:
            await wait_for_status(queue, job_id, JobStatus.PROCESSING)

    stats = await queue.stats()
    assert stats.totals[JobStatus.PROCESSING] == 0
    assert stats.totals[JobStatus.COMPLETED] == 3
    assert stats.totals[JobStatus.PENDING] == 3
    assert worker.counts == {"complete": 3, "release": 3}


async def test_a_sync_handler_released_at_shutdown_sees_ctx_cancelled(queue: Queue) -> None:
    import threading

    started = threading.Event()
    saw_cancel = threading.Event()

    @queue.handler("slow_sync")
    def slow_sync(payload: dict[str, Any], ctx: JobContext) -> None:
        started.set()
        for _ in range(500):  # up to 5 s, unless told to stop
            if ctx.cancelled:
                saw_cancel.set()
                return
            time.sleep(0.01)

    job_id = await queue.add_job("slow_sync")
    worker = fast_worker(queue, concurrency=1, shutdown_timeout=0.2)
    task = asyncio.create_task(worker.run())
    try:
        assert await asyncio.to_thread(started.wait, 10)
        worker.request_stop()
        await asyncio.wait_for(task, 10)
    finally:
        worker.request_stop(force=True)
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
    assert await asyncio.to_thread(saw_cancel.wait, 5)
    job = await queue.get_job(job_id)
    assert job is not None
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)


async def test_a_hung_success_hook_does_not_keep_a_stopped_worker_alive(queue: Queue) -> None:
    hook_started = asyncio.Event()

    async def hang(job: Any, output: Any) -> None:
        hook_started.set()
        await asyncio.sleep(3600)

    @queue.handler("quick", on_success=hang)
    async def quick(payload: dict[str, Any]) -> int:
        return 1

    job_id = await queue.add_job("quick")
    worker = fast_worker(queue, concurrency=1, shutdown_timeout=0.3)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(hook_started.wait(), 10)
        began = time.monotonic()
        worker.request_stop()
        await asyncio.wait_for(task, 10)
        stopped_after = time.monotonic() - began
    finally:
        worker.request_stop(force=True)
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
    job = await queue.get_job(job_id)
    assert job is not None
    assert job.status == JobStatus.COMPLETED
    assert stopped_after < 3
