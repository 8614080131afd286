"""Running handlers: async and sync, concurrency, output, progress and the job context."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from pydantic import BaseModel
from worker_kit import (
    event_types,
    eventually,
    fast_worker,
    running,
    wait_for_status,
)

from agentqueue import FailureReason, JobContext, JobStatus, Queue


async def test_async_handler_output_is_stored_and_the_job_completes(queue: Queue) -> None:
    @queue.handler("double")
    async def double(payload: dict[str, int]) -> dict[str, int]:
        return {"doubled": payload["n"] * 2}

    job_id = await queue.add_job("double", {"n": 21})
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    assert job.output == {"doubled": 42}
    assert job.attempts == 1
    assert job.progress == 100
    assert job.completed_at is not None
    assert job.lease_expires_at is None
    assert await event_types(queue, job_id) == ["added", "claim", "complete"]


async def test_handler_sees_its_job_and_attempt_through_the_context(queue: Queue) -> None:
    seen: dict[str, Any] = {}

    @queue.handler("inspect")
    async def inspect(payload: dict[str, Any], ctx: JobContext) -> None:
        seen.update(
            job_id=ctx.job_id,
            job=ctx.job,
            attempt=ctx.attempt,
            worker_id=ctx.worker_id,
            cancelled=ctx.cancelled,
        )

    job_id = await queue.add_job("inspect", {"x": 1}, tags=["t"])
    worker = fast_worker(queue, worker_id="inspector")
    async with running(worker):
        await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    assert seen["job_id"] == job_id
    assert seen["attempt"] == 1
    assert seen["worker_id"] == "inspector"
    assert seen["cancelled"] is False
    job = seen["job"]
    assert (job.id, job.job_type, job.payload, job.tags) == (job_id, "inspect", {"x": 1}, ["t"])
    assert job.status is JobStatus.PROCESSING
    assert job.locked_by == "inspector"


class Order(BaseModel):
    sku: str
    quantity: int


async def test_handler_with_a_model_annotation_receives_a_model_instance(queue: Queue) -> None:
    received: list[Any] = []

    @queue.handler("order")
    async def order(item: Order) -> int:
        received.append(item)
        return item.quantity * 10

    job_id = await queue.add_job("order", {"sku": "A-1", "quantity": 3})
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    assert received == [Order(sku="A-1", quantity=3)]
    assert job.output == 30


async def test_sync_handler_runs_in_a_thread_while_the_loop_keeps_running_async_jobs(
    queue: Queue,
) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)
    threads: set[int] = set()

    @queue.handler("blocking")
    def blocking(payload: dict[str, int]) -> int:
        threads.add(threading.get_ident())
        started.release()
        assert release.wait(10), "the test never released the sync handlers"
        return payload["i"]

    @queue.handler("quick")
    async def quick(payload: dict[str, Any]) -> str:
        return "done"

    sync_ids = [await queue.add_job("blocking", {"i": i}) for i in range(10)]
    worker = fast_worker(queue, concurrency=11)
    try:
        async with running(worker):
            for _ in sync_ids:  # all ten sync handlers are blocked in their threads at once
                assert await asyncio.to_thread(started.acquire, True, 10)
            quick_id = await queue.add_job("quick")
            quick_job = await wait_for_status(queue, quick_id, JobStatus.COMPLETED, timeout=3)
            still_blocked = [await queue.get_job(job_id) for job_id in sync_ids]
            release.set()
            done = [
                await wait_for_status(queue, job_id, JobStatus.COMPLETED) for job_id in sync_ids
            ]
    finally:
        release.set()

    assert quick_job.output == "done"
    assert all(job is not None and job.status is JobStatus.PROCESSING for job in still_blocked)
    assert [job.output for job in done] == list(range(10))
    assert len(threads) == 10
    assert threading.get_ident() not in threads


async def test_sync_handlers_sleeping_together_finish_together(queue: Queue) -> None:
    @queue.handler("nap")
    def nap(payload: dict[str, Any]) -> None:
        time.sleep(0.3)

    ids = [await queue.add_job("nap") for _ in range(10)]
    started = time.monotonic()
    async with running(fast_worker(queue, concurrency=10)):
        for job_id in ids:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    elapsed = time.monotonic() - started

    assert elapsed < 2.0, f"10 sync handlers of 0.3 s took {elapsed:.2f} s: they ran one by one"


async def test_concurrency_limit_is_reached_and_never_exceeded(queue: Queue) -> None:
    active = 0
    most = 0

    @queue.handler("count")
    async def count(payload: dict[str, Any]) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        try:
            await asyncio.sleep(0.05)
        finally:
            active -= 1

    ids = [await queue.add_job("count") for _ in range(15)]
    async with running(fast_worker(queue, concurrency=3)):
        for job_id in ids:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    assert most == 3


async def test_set_output_wins_over_the_returned_value(queue: Queue) -> None:
    @queue.handler("report")
    async def report(payload: dict[str, Any], ctx: JobContext) -> str:
        ctx.set_output({"from": "set_output"})
        return "returned"

    job_id = await queue.add_job("report")
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    assert job.output == {"from": "set_output"}


async def test_sync_handler_can_set_its_output_from_its_thread(queue: Queue) -> None:
    @queue.handler("sync_report")
    def sync_report(payload: dict[str, Any], ctx: JobContext) -> None:
        ctx.set_output(["from", "thread"])

    job_id = await queue.add_job("sync_report")
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    assert job.output == ["from", "thread"]


async def test_progress_is_persisted_while_the_job_runs_with_a_progress_event(
    queue: Queue,
) -> None:
    finish = asyncio.Event()

    @queue.handler("steps")
    async def steps(payload: dict[str, Any], ctx: JobContext) -> None:
        ctx.set_progress(10, "starting")
        ctx.set_progress(40, "halfway there")
        await asyncio.wait_for(finish.wait(), 10)

    job_id = await queue.add_job("steps")
    async with running(fast_worker(queue)):

        async def progress_saved() -> bool:
            job = await queue.get_job(job_id)
            return job is not None and job.progress == 40

        await eventually(progress_saved)
        during = await queue.get_job(job_id)
        finish.set()
        after = await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    assert during is not None
    assert (during.status, during.progress_message) == (JobStatus.PROCESSING, "halfway there")
    assert after.progress == 100
    progress_events = [
        event for event in await queue.get_job_events(job_id) if event.type == "progress"
    ]
    assert progress_events, "no progress event was written"
    assert progress_events[-1].data == {"progress": 40, "message": "halfway there"}
    assert progress_events[-1].status is JobStatus.PROCESSING


async def test_sync_handler_progress_is_persisted_from_its_thread(queue: Queue) -> None:
    finish = threading.Event()

    @queue.handler("sync_steps")
    def sync_steps(payload: dict[str, Any], ctx: JobContext) -> None:
        ctx.set_progress(70, "from a thread")
        assert finish.wait(10)

    job_id = await queue.add_job("sync_steps")
    try:
        async with running(fast_worker(queue)):

            async def progress_saved() -> Any:
                job = await queue.get_job(job_id)
                return job if job is not None and job.progress == 70 else None

            during = await eventually(progress_saved)
            finish.set()
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    finally:
        finish.set()

    assert during.progress_message == "from a thread"
    assert "progress" in await event_types(queue, job_id)


async def test_output_that_is_not_json_data_fails_the_attempt(queue: Queue) -> None:
    @queue.handler("odd_output")
    async def odd_output(payload: dict[str, Any]) -> Any:
        return {"when": object()}

    job_id = await queue.add_job("odd_output", max_attempts=1)
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.FAILED)

    assert job.failure_reason is FailureReason.HANDLER_ERROR
    assert job.last_error is not None
    assert "not plain JSON data" in job.last_error
