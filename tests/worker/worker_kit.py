"""Helpers for the worker tests: short timings, a worker run as a task, bounded polls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from agentqueue import Job, JobStatus, Queue, Worker
from tests.conftest import eventually

__all__ = [
    "FAST",
    "IdleProbe",
    "event_types",
    "eventually",
    "fast_worker",
    "running",
    "wait_event",
    "wait_for_status",
]

FAST: dict[str, Any] = {
    "handle_signals": False,
    "lease_seconds": 2,
    "heartbeat_interval": 0.2,
    "poll_interval": 0.2,
    "shutdown_timeout": 2,
}
"""Worker settings that keep every test short."""


def fast_worker(queue: Queue, **settings: Any) -> Worker:
    """Return a worker of `queue` with the short test timings, overridden by `settings`."""
    return queue.worker(**{**FAST, **settings})


@asynccontextmanager
async def running(worker: Worker, *, stop_within: float = 10.0) -> AsyncIterator[asyncio.Task[Any]]:
    """Run `worker` as a task; on exit request a stop and wait (bounded) until it returned.

    An exception raised by the worker's `run()` propagates, so a crashed worker fails the test.
    """
    task = asyncio.create_task(worker.run(), name="test-worker")
    try:
        yield task
    finally:
        worker.request_stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), stop_within)
        except TimeoutError:
            worker.request_stop(force=True)
            await asyncio.wait_for(task, stop_within)
            pytest.fail(f"the worker did not stop within {stop_within} s of request_stop()")


async def wait_for_status(
    queue: Queue, job_id: int, *statuses: JobStatus | str, timeout: float = 10.0
) -> Job:
    """Return the job once its status is one of `statuses`; fail after `timeout` seconds."""
    wanted = {JobStatus(status) for status in statuses}

    async def reached() -> Job | None:
        job = await queue.get_job(job_id)
        assert job is not None, f"job {job_id} vanished"
        return job if job.status in wanted else None

    try:
        return await eventually(reached, timeout=timeout)
    except AssertionError:
        job = await queue.get_job(job_id)
        raise AssertionError(
            f"job {job_id} did not reach {sorted(wanted)} within {timeout} s: {job!r}"
        ) from None


async def wait_event(event: asyncio.Event, timeout: float = 10.0) -> None:
    """Wait for an asyncio event, failing (not hanging) after `timeout` seconds."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pytest.fail(f"event not set within {timeout} s")


async def event_types(queue: Queue, job_id: int) -> list[str]:
    """Return the types of a job's events, oldest first."""
    return [event.type.value for event in await queue.get_job_events(job_id)]


class IdleProbe:
    """Counts how often the worker entered its idle wait (the store's `wait_for_change`,
    `ring_on_change` or `claim_after_change`, whichever the store has and the worker uses).

    A barrier for wake-up tests: once `entered` grows, the worker has found nothing to do and
    is asleep, so a job that starts quickly afterwards was started by a wake-up, not a poll.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, queue: Queue) -> None:
        self.entered = 0
        store = queue.backend
        for name in ("wait_for_change", "claim_after_change"):
            if hasattr(store, name):
                monkeypatch.setattr(store, name, self._counting(getattr(store, name)))
        if hasattr(store, "ring_on_change"):
            hang = getattr(store, "ring_on_change")  # noqa: B009 (not on the Backend protocol)
            monkeypatch.setattr(store, "ring_on_change", self._counting_sync(hang))

    def _counting(self, wait: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.entered += 1
            return await wait(*args, **kwargs)

        return counted

    def _counting_sync(self, hang: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.entered += 1
            return hang(*args, **kwargs)

        return counted

    async def asleep_after(self, count: int, timeout: float = 5.0) -> None:
        """Wait until the worker entered its idle wait more than `count` times."""

        async def entered() -> bool:
            return self.entered > count

        await eventually(entered, timeout=timeout, interval=0.005)
