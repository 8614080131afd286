"""on_success and on_failure hooks: called after the outcome is stored, never changing it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from worker_kit import eventually, fast_worker, running, wait_event, wait_for_status

from agentqueue import ErrorRecord, FailureReason, Job, JobStatus, Queue


async def test_on_success_gets_the_job_and_its_output_after_the_completion_is_stored(
    queue: Queue,
) -> None:
    calls: list[tuple[int, Any, JobStatus | None]] = []

    async def on_success(job: Job, output: Any) -> None:
        stored = await queue.get_job(job.id)
        calls.append((job.id, output, stored.status if stored else None))

    @queue.handler("greet", on_success=on_success)
    async def greet(payload: dict[str, str]) -> str:
        return f"hello {payload['name']}"

    job_id = await queue.add_job("greet", {"name": "ada"})
    async with running(fast_worker(queue)):
        await wait_for_status(queue, job_id, JobStatus.COMPLETED)

        async def called() -> bool:
            return bool(calls)

        await eventually(called)

    assert calls == [(job_id, "hello ada", JobStatus.COMPLETED)]


async def test_on_failure_gets_each_error_and_whether_the_job_will_retry(queue: Queue) -> None:
    calls: list[tuple[int, ErrorRecord, bool, JobStatus | None]] = []

    async def on_failure(job: Job, error: ErrorRecord, will_retry: bool) -> None:
        stored = await queue.get_job(job.id)
        calls.append((job.id, error, will_retry, stored.status if stored else None))

    @queue.handler("fragile", on_failure=on_failure)
    async def fragile(payload: dict[str, Any]) -> None:
        raise KeyError("missing")

    job_id = await queue.add_job("fragile", max_attempts=2, retry_delay=0.05)
    async with running(fast_worker(queue)):
        await wait_for_status(queue, job_id, JobStatus.FAILED)

        async def both_called() -> bool:
            return len(calls) == 2

        await eventually(both_called)

    (first_id, first, first_retry, _), (last_id, last, last_retry, last_status) = calls
    assert (first_id, last_id) == (job_id, job_id)
    assert (first.attempt, first.reason, first_retry) == (1, FailureReason.HANDLER_ERROR, True)
    assert (last.attempt, last.reason, last_retry) == (2, FailureReason.HANDLER_ERROR, False)
    assert last.message == "KeyError: 'missing'"
    assert last_status is JobStatus.FAILED


async def test_raising_hooks_change_neither_the_outcome_nor_the_next_jobs(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    def on_success(job: Job, output: Any) -> None:
        raise RuntimeError("success hook broke")

    async def on_failure(job: Job, error: ErrorRecord, will_retry: bool) -> None:
        raise RuntimeError("failure hook broke")

    @queue.handler("fine", on_success=on_success)
    async def fine(payload: dict[str, int]) -> int:
        return payload["n"]

    @queue.handler("bad", on_failure=on_failure)
    async def bad(payload: dict[str, Any]) -> None:
        raise ValueError("bad")

    with caplog.at_level(logging.ERROR, logger="agentqueue.worker.worker"):
        ids = [await queue.add_job("fine", {"n": n}) for n in range(3)]
        bad_id = await queue.add_job("bad", max_attempts=1)
        worker = fast_worker(queue, concurrency=1)
        async with running(worker):
            done = [await wait_for_status(queue, job_id, JobStatus.COMPLETED) for job_id in ids]
            failed = await wait_for_status(queue, bad_id, JobStatus.FAILED)

    assert [job.output for job in done] == [0, 1, 2]
    assert failed.last_error == "ValueError: bad"
    assert worker.counts == {"complete": 3, "fail": 1}
    hook_errors = [str(r.exc_info[1]) for r in caplog.records if r.exc_info is not None]
    assert sorted(hook_errors) == ["failure hook broke"] + ["success hook broke"] * 3


async def test_hooks_do_not_run_for_a_cancelled_or_a_released_job(queue: Queue) -> None:
    calls: list[str] = []
    started = 0
    both_started = asyncio.Event()

    @queue.handler(
        "quiet",
        on_success=lambda job, output: calls.append("success"),
        on_failure=lambda job, error, will_retry: calls.append("failure"),
    )
    async def quiet(payload: dict[str, Any]) -> None:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await asyncio.sleep(30)

    to_cancel = await queue.add_job("quiet")
    to_release = await queue.add_job("quiet")
    worker = fast_worker(queue, shutdown_timeout=0)
    async with running(worker):
        await wait_event(both_started)
        await queue.cancel_job(to_cancel)
        await wait_for_status(queue, to_cancel, JobStatus.CANCELLED, timeout=3)

    released = await queue.get_job(to_release)
    assert released is not None
    assert released.status is JobStatus.PENDING
    assert worker.counts == {"cancel": 1, "release": 1}
    assert calls == []
