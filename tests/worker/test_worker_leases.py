"""Leases: heartbeats keep a running job, expired leases are rescued, a lost lease is fenced."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from worker_kit import eventually, fast_worker, running, wait_event, wait_for_status

from agentqueue import FailureReason, FrozenClock, JobContext, JobStatus, Queue
from agentqueue.backends.base import HeartbeatResult


async def test_heartbeats_keep_a_job_running_longer_than_its_lease(queue: Queue) -> None:
    # The handler outlives its lease twice over. A lease of 2 s, renewed every 0.2 s, rides out
    # a 1.5 s stall of a loaded machine's event loop (seen once with a 1 s lease).
    @queue.handler("long")
    async def long(payload: dict[str, Any]) -> str:
        await asyncio.sleep(4.4)
        return "finished"

    job_id = await queue.add_job("long")
    settings = {"lease_seconds": 2, "heartbeat_interval": 0.2, "rescue_interval": 0.1}
    # A second worker sweeps for expired leases the whole time.
    async with (
        running(fast_worker(queue, **settings)),
        running(fast_worker(queue, job_types=["none"], **settings)),
    ):
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout=10)

    assert (job.attempts, job.output, job.error_history) == (1, "finished", [])
    assert [e.type.value for e in await queue.get_job_events(job_id)] == [
        "added",
        "claim",
        "complete",
    ]


async def test_job_of_a_dead_worker_is_rescued_after_its_lease_and_runs_again(
    queue: Queue,
) -> None:
    @queue.handler("orphan")
    async def orphan(payload: dict[str, Any], ctx: JobContext) -> int:
        return ctx.attempt

    job_id = await queue.add_job("orphan", max_attempts=3, retry_delay=0)
    # A worker that claims and then dies: nobody heartbeats its lease.
    claimed = await queue.backend.claim(
        worker_id="dead-worker", queue=None, job_types=None, limit=1, lease_seconds=0.3
    )
    assert [job.id for job in claimed] == [job_id]
    async with running(fast_worker(queue, rescue_interval=0.1)):
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout=5)

    assert (job.attempts, job.output) == (2, 2)
    [lost] = job.error_history
    assert (lost.attempt, lost.reason) == (1, FailureReason.LEASE_EXPIRED)
    assert "dead-worker" in lost.message
    events = await queue.get_job_events(job_id)
    assert [e.type.value for e in events] == ["added", "claim", "rescue", "claim", "complete"]
    assert events[2].data["worker"] == "dead-worker"


async def test_dead_workers_job_on_its_last_attempt_fails_with_lease_expired(
    queue: Queue,
) -> None:
    ran: list[int] = []

    @queue.handler("orphan")
    async def orphan(payload: dict[str, Any]) -> None:
        ran.append(1)

    job_id = await queue.add_job("orphan", max_attempts=1)
    await queue.backend.claim(
        worker_id="dead-worker", queue=None, job_types=None, limit=1, lease_seconds=0.3
    )
    async with running(fast_worker(queue, rescue_interval=0.1)):
        job = await wait_for_status(queue, job_id, JobStatus.FAILED, timeout=5)

    assert ran == []
    assert (job.attempts, job.failure_reason) == (1, FailureReason.LEASE_EXPIRED)
    assert job.last_error is not None
    assert "dead-worker" in job.last_error


async def test_late_completion_after_another_worker_took_over_the_job_is_refused(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FrozenClock()
    first_started = asyncio.Event()
    release_first = asyncio.Event()

    async with Queue(store_url, clock=clock) as queue:

        @queue.handler("contested")
        async def contested(payload: dict[str, Any], ctx: JobContext) -> str:
            if ctx.attempt == 1:
                first_started.set()
                await asyncio.wait_for(release_first.wait(), 10)
                return "from stalled worker A"
            return "from rescuer B"

        job_id = await queue.add_job("contested", max_attempts=3, retry_delay=0)
        # A holds one slot (so it cannot take the job back itself) and heartbeats too rarely
        # to matter: it is a stalled worker whose lease runs out.
        stalled = fast_worker(
            queue,
            worker_id="A",
            concurrency=1,
            lease_seconds=60,
            heartbeat_interval=30,
            rescue_interval=30,
        )
        rescuer = fast_worker(queue, worker_id="B", rescue_interval=0.1)
        async with running(stalled):
            await wait_event(first_started)
            clock.advance(61)
            async with running(rescuer):
                taken_over = await wait_for_status(queue, job_id, JobStatus.COMPLETED)
            with caplog.at_level(logging.WARNING, logger="agentqueue.worker.worker"):
                release_first.set()

                async def stalled_handler_returned() -> bool:
                    return not stalled.running_jobs

                await eventually(stalled_handler_returned)
        # Leaving `running` drained A: its outcome was submitted and answered.
        final = await queue.get_job(job_id)
        events = await queue.get_job_events(job_id)

    assert taken_over.output == "from rescuer B"
    assert final == taken_over
    assert stalled.counts == {}
    assert rescuer.counts == {"complete": 1}
    assert [(e.type.value, e.data.get("worker")) for e in events] == [
        ("added", None),
        ("claim", "A"),
        ("rescue", "A"),
        ("claim", "B"),
        ("complete", None),
    ]
    assert final is not None
    assert final.attempts == 2
    assert [(e.attempt, e.reason) for e in final.error_history] == [
        (1, FailureReason.LEASE_EXPIRED)
    ]
    assert "outcome complete not applied (lease lost)" in caplog.text


async def test_worker_that_lost_its_lease_stops_the_handler_and_writes_nothing(
    store_url: str,
) -> None:
    clock = FrozenClock()
    started = asyncio.Event()
    stopped = asyncio.Event()

    async with Queue(store_url, clock=clock) as queue:

        @queue.handler("long")
        async def long(payload: dict[str, Any]) -> str:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                stopped.set()
                raise
            return "never"

        # On its last attempt, so the sweep fails the job and no claim can take it again.
        job_id = await queue.add_job("long", max_attempts=1)
        worker = fast_worker(queue, worker_id="A")
        async with running(worker):
            await wait_event(started)
            # Another process's sweep, whose clock is past A's lease, takes the job back.
            swept = await queue.backend.rescue_expired(now=clock.now() + timedelta(seconds=100))
            await wait_event(stopped, timeout=3)
        job = await queue.get_job(job_id)
        events = await queue.get_job_events(job_id)

    assert swept == [job_id]
    assert worker.counts == {}, "the worker wrote an outcome for an attempt it no longer held"
    assert job is not None
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert job.failure_reason is FailureReason.LEASE_EXPIRED
    assert [e.type.value for e in events] == ["added", "claim", "rescue"]


async def test_worker_given_back_a_job_it_still_runs_stops_the_stale_attempt_first(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_started = asyncio.Event()
    first_stopped = asyncio.Event()
    active: set[int] = set()
    overlaps: list[set[int]] = []
    stalled = True

    @queue.handler("contested")
    async def contested(payload: dict[str, Any], ctx: JobContext) -> str:
        nonlocal stalled
        if active:
            overlaps.append({*active, ctx.attempt})
        active.add(ctx.attempt)
        try:
            if ctx.attempt == 1:
                first_started.set()
                await asyncio.sleep(30)
            stalled = False
            return f"attempt {ctx.attempt}"
        except asyncio.CancelledError:
            first_stopped.set()
            raise
        finally:
            active.discard(ctx.attempt)

    original = queue.backend.heartbeat

    async def stalling_heartbeat(**kwargs: Any) -> Any:
        # The first attempt's heartbeats are late (say, a blocked event loop): its lease runs
        # out and the worker's own sweep puts the job back, where its claim loop finds it.
        if stalled:
            return HeartbeatResult()
        return await original(**kwargs)

    monkeypatch.setattr(queue.backend, "heartbeat", stalling_heartbeat)
    job_id = await queue.add_job("contested", max_attempts=3, retry_delay=0)
    worker = fast_worker(queue, lease_seconds=0.5, heartbeat_interval=0.1, rescue_interval=0.1)
    async with running(worker):
        await wait_event(first_started)
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout=5)
        await wait_event(first_stopped, timeout=3)
        assert worker.running_jobs == []

    assert overlaps == [], "two attempts of one job ran at once in one worker"
    assert (job.output, job.attempts) == ("attempt 2", 2)
    assert worker.counts == {"complete": 1}


async def test_a_handler_blocking_the_event_loop_makes_the_worker_warn_of_late_heartbeats(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Heartbeats run on the event loop, so a blocking call in an async handler stops them:
    # the worker says so, instead of leaving only a "lease lost" later. One store suffices.
    async with Queue("memory://") as queue:

        @queue.handler("blocks")
        async def blocks(payload: dict[str, Any]) -> str:
            time.sleep(1.4)  # noqa: ASYNC251 - the mistake under test
            return "done"

        job_id = await queue.add_job("blocks")
        with caplog.at_level(logging.WARNING, logger="agentqueue.worker.worker"):
            async with running(fast_worker(queue)):
                job = await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout=10)

    late = [r.getMessage() for r in caplog.records if "heartbeat ran" in r.getMessage()]
    assert job.output == "done"
    assert late, "no warning of the blocked loop"
    assert "event loop was blocked" in late[0]
