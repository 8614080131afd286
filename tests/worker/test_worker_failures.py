"""Failed attempts: retries and their delays, timeouts, unknown types, payloads gone stale."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from worker_kit import event_types, fast_worker, running, wait_for_status

from agentqueue import FailureReason, FrozenClock, JobContext, JobStatus, Queue


async def test_failing_handler_is_retried_after_its_delay_and_fails_after_max_attempts(
    queue: Queue,
) -> None:
    @queue.handler("flaky")
    async def flaky(payload: dict[str, Any], ctx: JobContext) -> None:
        raise ValueError(f"boom {ctx.attempt}")

    job_id = await queue.add_job("flaky", max_attempts=3, retry_delay=0.2, retry_backoff=False)
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.FAILED)

    assert job.attempts == 3
    assert job.last_error == "ValueError: boom 3"
    assert job.failure_reason is FailureReason.HANDLER_ERROR
    history = job.error_history
    assert [error.attempt for error in history] == [1, 2, 3]
    assert [error.message for error in history] == [f"ValueError: boom {n}" for n in (1, 2, 3)]
    assert {error.reason for error in history} == {FailureReason.HANDLER_ERROR}
    for error in history:
        assert error.traceback is not None
        assert error.traceback.startswith("Traceback (most recent call last)")
        assert "in flaky" in error.traceback
        assert error.traceback.rstrip().endswith(error.message)

    events = await queue.get_job_events(job_id)
    assert [e.type.value for e in events] == [
        "added",
        "claim",
        "retry_later",
        "claim",
        "retry_later",
        "claim",
        "fail",
    ]
    assert [e.data["retry_in"] for e in events if e.type == "retry_later"] == [0.2, 0.2]
    claims = [e.at for e in events if e.type == "claim"]
    for failed, next_claim in zip(history, claims[1:], strict=False):
        waited = (next_claim - failed.at).total_seconds()
        assert 0.2 <= waited < 1.5, f"retry started {waited:.3f} s after the failure"


async def test_retry_waits_the_delay_and_backoff_doubles_it(store_url: str) -> None:
    clock = FrozenClock()
    async with Queue(store_url, clock=clock) as queue:

        @queue.handler("flaky")
        async def flaky(payload: dict[str, Any], ctx: JobContext) -> None:
            raise RuntimeError(f"attempt {ctx.attempt} broke")

        job_id = await queue.add_job(
            "flaky", max_attempts=3, retry_delay=10, retry_backoff=True, retry_delay_max=None
        )
        waits: list[float] = []
        for attempt in (1, 2):
            counts = await fast_worker(queue).run(once=True)
            assert counts == {"retry": 1}
            job = await queue.get_job(job_id)
            assert job is not None
            assert (job.status, job.attempts) == (JobStatus.PENDING, attempt)
            failed_at = job.error_history[-1].at
            assert failed_at == clock.now()
            waits.append((job.run_at - failed_at).total_seconds())

            clock.advance(waits[-1] - 0.001)
            assert await fast_worker(queue).run(once=True) == {}, "retried before its delay"
            clock.set(job.run_at)

        counts = await fast_worker(queue).run(once=True)
        job = await queue.get_job(job_id)
        retry_events = [e for e in await queue.get_job_events(job_id) if e.type == "retry_later"]

    assert counts == {"fail": 1}
    assert job is not None
    assert (job.status, job.attempts) == (JobStatus.FAILED, 3)
    assert job.last_error == "RuntimeError: attempt 3 broke"
    assert job.completed_at == clock.now()
    # Equal jitter: the n-th delay is between half and all of retry_delay * 2**(n-1).
    assert 5 <= waits[0] <= 10
    assert 10 <= waits[1] <= 20
    assert [e.data["retry_in"] for e in retry_events] == pytest.approx(waits, abs=1e-5)


async def test_retry_delay_is_capped_by_retry_delay_max(store_url: str) -> None:
    clock = FrozenClock()
    async with Queue(store_url, clock=clock) as queue:

        @queue.handler("flaky")
        async def flaky(payload: dict[str, Any]) -> None:
            raise RuntimeError("broke")

        job_id = await queue.add_job(
            "flaky", max_attempts=2, retry_delay=100, retry_backoff=False, retry_delay_max=3
        )
        assert await fast_worker(queue).run(once=True) == {"retry": 1}
        job = await queue.get_job(job_id)

    assert job is not None
    assert job.run_at == clock.now() + timedelta(seconds=3)


async def test_handler_running_past_its_timeout_fails_the_attempt_with_reason_timeout(
    queue: Queue,
) -> None:
    cancelled: list[int] = []

    @queue.handler("slow")
    async def slow(payload: dict[str, Any], ctx: JobContext) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(ctx.attempt)
            raise

    job_id = await queue.add_job("slow", timeout=0.2, max_attempts=2, retry_delay=0)
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.FAILED, timeout=5)

    assert cancelled == [1, 2]
    assert job.failure_reason is FailureReason.TIMEOUT
    assert [(e.attempt, e.reason) for e in job.error_history] == [
        (1, FailureReason.TIMEOUT),
        (2, FailureReason.TIMEOUT),
    ]
    assert job.last_error == "timed out after 0.2 s"
    assert job.started_at is not None
    assert job.completed_at is not None
    assert (job.completed_at - job.started_at).total_seconds() < 2


@pytest.mark.parametrize("timeout", [None, 30.0])
async def test_a_timeout_error_raised_by_the_handler_itself_is_a_handler_error(
    queue: Queue, timeout: float | None
) -> None:
    @queue.handler("calls_out")
    async def calls_out(payload: dict[str, Any]) -> None:
        raise TimeoutError("the upstream API did not answer")

    job_id = await queue.add_job("calls_out", timeout=timeout, max_attempts=1)
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.FAILED, timeout=5)

    assert job.failure_reason is FailureReason.HANDLER_ERROR
    assert job.last_error == "TimeoutError: the upstream API did not answer"


async def test_job_of_an_unknown_type_fails_at_once_naming_the_known_types(
    queue: Queue,
) -> None:
    @queue.handler("resize_image")
    async def resize_image(payload: dict[str, Any]) -> None: ...

    @queue.handler("send_email")
    async def send_email(payload: dict[str, Any]) -> None: ...

    job_id = await queue.add_job("ghost", {"a": 1}, max_attempts=5)
    async with running(fast_worker(queue, worker_id="w-1")):
        job = await wait_for_status(queue, job_id, JobStatus.FAILED)

    assert job.attempts == 1, "a job without a handler must not be retried"
    assert job.failure_reason is FailureReason.NO_HANDLER
    assert job.last_error is not None
    assert "'ghost'" in job.last_error
    assert "resize_image" in job.last_error
    assert "send_email" in job.last_error
    assert "w-1" in job.last_error
    assert await event_types(queue, job_id) == ["added", "claim", "fail"]


class Resize(BaseModel):
    width: int
    height: int


async def test_payload_that_stopped_matching_the_handler_fails_without_retry(
    queue: Queue,
) -> None:
    # Enqueued before this process knew the handler's model (an older schema, say).
    job_id = await queue.add_job("resize", {"width": "wide"}, max_attempts=3)
    calls: list[Any] = []

    @queue.handler("resize")
    async def resize(size: Resize) -> None:
        calls.append(size)

    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.FAILED)

    assert calls == [], "the handler must not run with a payload it does not accept"
    assert job.attempts == 1
    assert job.failure_reason is FailureReason.PAYLOAD_INVALID
    assert job.last_error is not None
    assert "'resize'" in job.last_error
    assert "width" in job.last_error
    assert "height" in job.last_error


async def test_sync_handler_past_its_timeout_frees_its_slot_for_the_next_sync_job(
    queue: Queue,
) -> None:
    release = threading.Event()

    @queue.handler("stuck")
    def stuck(payload: dict[str, Any]) -> None:
        release.wait(10)

    @queue.handler("next")
    def next_job(payload: dict[str, Any]) -> str:
        return "ran"

    stuck_id = await queue.add_job("stuck", timeout=0.2, max_attempts=1, priority=1)
    next_id = await queue.add_job("next")
    try:
        async with running(fast_worker(queue, concurrency=1)):
            await wait_for_status(queue, stuck_id, JobStatus.FAILED, timeout=5)
            next_done = await wait_for_status(queue, next_id, JobStatus.COMPLETED, timeout=3)
    finally:
        release.set()

    assert next_done.output == "ran"
