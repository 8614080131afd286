"""An idle worker starts new work at once: enqueue signals and due times, not slow polls.

Every test here uses poll_interval=5: a job that starts within 0.5 s was started by a wake-up.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from worker_kit import IdleProbe, fast_worker, running, wait_for_status

from agentqueue import JobStatus, Queue

SLOW_POLL = 5.0
QUICK = 0.5


async def test_job_enqueued_while_the_worker_is_idle_starts_at_once(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    @queue.handler("hello")
    async def hello(payload: dict[str, Any]) -> None: ...

    probe = IdleProbe(monkeypatch, queue)
    async with running(fast_worker(queue, poll_interval=SLOW_POLL)):
        await probe.asleep_after(0)
        job_id = await queue.add_job("hello")
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout=3)

    assert job.started_at is not None
    latency = (job.started_at - job.created_at).total_seconds()
    assert latency < QUICK, f"started {latency:.3f} s after it was enqueued"


async def test_job_enqueued_by_another_queue_on_the_same_store_starts_at_once(
    shared_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Queue(shared_url) as worker_side, Queue(shared_url) as producer:

        @worker_side.handler("hello")
        async def hello(payload: dict[str, Any]) -> None: ...

        probe = IdleProbe(monkeypatch, worker_side)
        async with running(fast_worker(worker_side, poll_interval=SLOW_POLL)):
            for round_ in range(3):
                await probe.asleep_after(round_)
                entered = probe.entered
                job_id = await producer.add_job("hello")
                job = await wait_for_status(producer, job_id, JobStatus.COMPLETED, timeout=3)
                assert job.started_at is not None
                latency = (job.started_at - job.created_at).total_seconds()
                assert latency < QUICK, f"round {round_}: started after {latency:.3f} s"
                await probe.asleep_after(entered)


async def test_delayed_job_starts_at_its_run_at_without_waiting_for_a_poll(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    @queue.handler("later")
    async def later(payload: dict[str, Any]) -> None: ...

    probe = IdleProbe(monkeypatch, queue)
    async with running(fast_worker(queue, poll_interval=SLOW_POLL)):
        await probe.asleep_after(0)
        job_id = await queue.add_job("later", delay=0.3)
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout=3)

    assert job.started_at is not None
    assert (job.run_at - job.created_at).total_seconds() == pytest.approx(0.3, abs=0.01)
    lateness = (job.started_at - job.run_at).total_seconds()
    assert 0 <= lateness < 0.3, f"started {lateness:+.3f} s from its run_at"


async def test_delayed_job_enqueued_by_another_queue_starts_at_its_run_at(
    shared_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Queue(shared_url) as worker_side, Queue(shared_url) as producer:

        @worker_side.handler("later")
        async def later(payload: dict[str, Any]) -> None: ...

        probe = IdleProbe(monkeypatch, worker_side)
        async with running(fast_worker(worker_side, poll_interval=SLOW_POLL)):
            await probe.asleep_after(0)
            job_id = await producer.add_job("later", delay=0.3)
            job = await wait_for_status(producer, job_id, JobStatus.COMPLETED, timeout=3)

    assert job.started_at is not None
    lateness = (job.started_at - job.run_at).total_seconds()
    assert 0 <= lateness < 0.3, f"started {lateness:+.3f} s from its run_at"


async def test_a_freed_slot_takes_the_next_job_without_waiting_for_a_poll(
    queue: Queue,
) -> None:
    @queue.handler("step")
    async def step(payload: dict[str, Any]) -> None: ...

    ids = [await queue.add_job("step") for _ in range(5)]
    async with running(fast_worker(queue, concurrency=1, poll_interval=SLOW_POLL)):
        jobs = [
            await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout=3) for job_id in ids
        ]

    for before, after in itertools.pairwise(jobs):
        assert before.completed_at is not None
        assert after.started_at is not None
        gap = (after.started_at - before.completed_at).total_seconds()
        assert gap < QUICK, f"job {after.id} started {gap:.3f} s after the slot freed"


async def test_an_idle_worker_sleeps_instead_of_claiming_over_and_over(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    @queue.handler("hello")
    async def hello(payload: dict[str, Any]) -> None: ...

    claims = 0
    store = queue.backend
    for name in ("claim", "claim_after_change"):
        if hasattr(store, name):
            original = getattr(store, name)

            async def counted(*args: Any, original: Any = original, **kwargs: Any) -> Any:
                nonlocal claims
                claims += 1
                return await original(*args, **kwargs)

            monkeypatch.setattr(store, name, counted)
    probe = IdleProbe(monkeypatch, queue)
    async with running(fast_worker(queue, poll_interval=SLOW_POLL)):
        await probe.asleep_after(0)
        before = claims
        await asyncio.sleep(0.5)
        # An empty claim must not wake the worker that made it (PostgreSQL's local wake-up
        # after every statement once made an idle worker claim ~750 times a second).
        assert claims - before <= 2
