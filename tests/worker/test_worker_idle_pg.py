"""An idle PostgreSQL worker claims again only for changes that may bring work: not after its
own plain completions (a claim for nothing, that a job enqueued meanwhile waited for), yet at
once when a completion frees capacity under a flow limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from worker_kit import fast_worker, running, wait_for_status

from agentqueue import JobStatus, Queue


def count_claims(monkeypatch: pytest.MonkeyPatch, queue: Queue) -> list[int]:
    """Record how many jobs each of the worker's claims took."""
    taken: list[int] = []
    claim = queue.backend.claim

    async def counted(*args: Any, **kwargs: Any) -> Any:
        jobs = await claim(*args, **kwargs)
        taken.append(len(jobs))
        return jobs

    monkeypatch.setattr(queue.backend, "claim", counted)
    return taken


async def test_an_idle_worker_does_not_claim_again_after_its_own_completion(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Queue(postgres_url) as queue:

        @queue.handler("quick")
        async def quick(payload: dict[str, Any]) -> None: ...

        taken = count_claims(monkeypatch, queue)
        async with running(fast_worker(queue, poll_interval=5.0)):
            for _ in range(3):
                job_id = await queue.add_job("quick")
                await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout=3)
                before = len(taken)
                await asyncio.sleep(0.3)  # the completion was written; nothing else changed
                assert taken[before:] == [], f"claims after its own completion: {taken}"
        assert sum(taken) == 3


async def test_a_completion_that_frees_a_limited_slot_starts_the_next_job_at_once(
    postgres_url: str,
) -> None:
    async with Queue(postgres_url) as queue:
        release = asyncio.Event()

        @queue.handler("limited")
        async def limited(payload: dict[str, Any]) -> None:
            if payload["first"]:
                await release.wait()

        await queue.set_limit(job_type="limited", max_concurrent=1)
        async with running(fast_worker(queue, poll_interval=5.0, concurrency=4)):
            first = await queue.add_job("limited", {"first": True})
            await wait_for_status(queue, first, JobStatus.PROCESSING, timeout=3)
            second = await queue.add_job("limited", {"first": False})
            await asyncio.sleep(0.3)
            held = await queue.get_job(second)
            assert held is not None
            assert held.status == JobStatus.PENDING  # held by the limit
            release.set()
            done = await wait_for_status(queue, second, JobStatus.COMPLETED, timeout=2)
            one = await wait_for_status(queue, first, JobStatus.COMPLETED, timeout=2)
            assert one.completed_at is not None
            assert done.started_at is not None
            waited = (done.started_at - one.completed_at).total_seconds()
            assert waited < 1.0, f"started {waited:.2f} s after the slot freed (poll: 5 s)"
