"""Claim-ahead: short jobs are claimed beyond the free slots; long jobs are never hoarded."""

from __future__ import annotations

import asyncio
import gc

from worker_kit import eventually, fast_worker, running, wait_event, wait_for_status

from agentqueue import JobStatus, Queue
from agentqueue.backends.base import FinishesWithClaim


async def _warm_up(queue: Queue, count: int = 6) -> None:
    """Run a few quick jobs so the worker has seen that this queue's handlers are short."""
    ids = [await queue.add_job("quick") for _ in range(count)]
    for job_id in ids:
        await wait_for_status(queue, job_id, JobStatus.COMPLETED)


async def _add_together(queue: Queue, job_type: str, count: int) -> list[int]:
    """Enqueue `count` jobs in one transaction, so one claim can see them all."""
    result = await queue.add_jobs([{"job_type": job_type} for _ in range(count)])
    return list(result)


async def _processing(queue: Queue) -> list[int]:
    page = await queue.list_jobs(status=JobStatus.PROCESSING, limit=100)
    return [job.id for job in page.items]


def _register_quick_and_gated(queue: Queue, gate: asyncio.Event, started: asyncio.Event) -> None:
    @queue.handler("quick")
    async def quick(payload: dict[str, object]) -> None:
        return None

    @queue.handler("gated")
    async def gated(payload: dict[str, object]) -> None:
        started.set()
        await asyncio.wait_for(gate.wait(), 10)


async def test_short_jobs_are_claimed_ahead_and_all_complete_once(queue: Queue) -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    _register_quick_and_gated(queue, gate, started)
    worker = fast_worker(queue, concurrency=2, prefetch=3)
    async with running(worker):
        await _warm_up(queue)
        ids = await _add_together(queue, "gated", 10)
        await wait_event(started)

        async def holding_full_buffer() -> list[int] | None:
            claimed = await _processing(queue)
            return claimed if len(claimed) == 5 else None

        # 2 slots running + 3 held: the worker's claim took more than its free slots.
        claimed = await eventually(holding_full_buffer)
        jobs = [await queue.get_job(job_id) for job_id in claimed]
        assert all(job is not None and job.locked_by == worker.worker_id for job in jobs)
        assert len(worker.running_jobs) == 2
        gate.set()
        for job_id in ids:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    done = [await queue.get_job(job_id) for job_id in ids]
    assert [job.attempts for job in done if job is not None] == [1] * 10
    assert worker.counts["complete"] == 16


async def test_long_jobs_are_not_claimed_ahead(queue: Queue) -> None:
    release = asyncio.Event()
    active = 0

    @queue.handler("slow")
    async def slow(payload: dict[str, object]) -> None:
        nonlocal active
        active += 1
        try:
            if payload.get("block"):
                await asyncio.wait_for(release.wait(), 10)
            else:
                await asyncio.sleep(0.06)  # longer than the claim-ahead threshold
        finally:
            active -= 1

    worker = fast_worker(queue, concurrency=2, prefetch=5)
    async with running(worker):
        warm = [await queue.add_job("slow") for _ in range(4)]
        for job_id in warm:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)
        blocked = [await queue.add_job("slow", {"block": True}) for _ in range(6)]

        async def both_slots_busy() -> bool:
            return active == 2

        await eventually(both_slots_busy)
        await asyncio.sleep(0.3)  # claims would have happened by now; none may
        assert len(await _processing(queue)) == 2
        release.set()
        for job_id in blocked:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)


async def test_a_job_held_too_long_is_released_with_its_attempt_given_back(queue: Queue) -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    _register_quick_and_gated(queue, gate, started)
    worker = fast_worker(queue, concurrency=1, prefetch=2, prefetch_hold=0.2)
    async with running(worker):
        await _warm_up(queue)
        ids = await _add_together(queue, "gated", 3)
        await wait_event(started)

        async def released() -> bool:
            jobs = [await queue.get_job(job_id) for job_id in ids[1:]]
            return all(job is not None and job.status is JobStatus.PENDING for job in jobs)

        await eventually(released)
        held = [await queue.get_job(job_id) for job_id in ids[1:]]
        assert [job.attempts for job in held if job is not None] == [0, 0]

        async def counted() -> bool:
            # The worker counts a release when its write returns, a moment after the store
            # shows it to other readers.
            return worker.counts["release"] >= 2

        await eventually(counted, timeout=5)
        gate.set()
        for job_id in ids:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)


async def test_stopping_releases_held_jobs_at_once(queue: Queue) -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    _register_quick_and_gated(queue, gate, started)
    worker = fast_worker(queue, concurrency=1, prefetch=3, prefetch_hold=30)
    async with running(worker):
        await _warm_up(queue)
        ids = await _add_together(queue, "gated", 4)
        await wait_event(started)

        async def holding() -> bool:
            return len(await _processing(queue)) == 4

        await eventually(holding)
        worker.request_stop()

        async def released() -> bool:
            jobs = [await queue.get_job(job_id) for job_id in ids[1:]]
            return all(job is not None and job.status is JobStatus.PENDING for job in jobs)

        await eventually(released, timeout=1.5)  # well before the running job finishes
        gate.set()
        await wait_for_status(queue, ids[0], JobStatus.COMPLETED)
    held = [await queue.get_job(job_id) for job_id in ids[1:]]
    assert [(job.status, job.attempts) for job in held if job is not None] == [
        (JobStatus.PENDING, 0)
    ] * 3


async def test_cancelling_a_held_job_cancels_it_without_running_it(queue: Queue) -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    _register_quick_and_gated(queue, gate, started)
    ran: list[int] = []

    @queue.handler("tracked")
    async def tracked(payload: dict[str, int]) -> None:
        ran.append(payload["n"])

    worker = fast_worker(queue, concurrency=1, prefetch=2, prefetch_hold=30)
    async with running(worker):
        await _warm_up(queue)
        first, held = await queue.add_jobs(
            [{"job_type": "gated"}, {"job_type": "tracked", "payload": {"n": 1}}]
        )
        await wait_event(started)

        async def holding() -> bool:
            return held in await _processing(queue)

        await eventually(holding)
        await queue.cancel_job(held)
        await wait_for_status(queue, held, JobStatus.CANCELLED)
        gate.set()
        await wait_for_status(queue, first, JobStatus.COMPLETED)
    assert ran == []


async def test_prefetch_zero_claims_only_free_slots(queue: Queue) -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    _register_quick_and_gated(queue, gate, started)
    worker = fast_worker(queue, concurrency=2, prefetch=0)
    async with running(worker):
        await _warm_up(queue)
        ids = [await queue.add_job("gated") for _ in range(5)]
        await wait_event(started)
        await asyncio.sleep(0.3)
        assert len(await _processing(queue)) == 2
        gate.set()
        for job_id in ids:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)


async def test_with_every_slot_busy_the_buffer_is_refilled_once_half_of_it_is_free(
    queue: Queue,
) -> None:
    gates = {n: asyncio.Event() for n in range(12)}
    started: list[int] = []

    @queue.handler("quick")
    async def quick(payload: dict[str, object]) -> None:
        return None

    @queue.handler("gated")
    async def gated(payload: dict[str, int]) -> None:
        started.append(payload["n"])
        await asyncio.wait_for(gates[payload["n"]].wait(), 10)

    worker = fast_worker(queue, concurrency=2, prefetch=4)
    async with running(worker):
        await _warm_up(queue)
        first = await queue.add_jobs([{"job_type": "gated", "payload": {"n": n}} for n in range(6)])
        # 2 running + 4 held; then 6 more wait in the store.
        await eventually(lambda: _count_processing(queue, 6))
        await queue.add_jobs([{"job_type": "gated", "payload": {"n": n}} for n in range(6, 12)])
        for n in (0, 1):  # two held jobs move into the freed slots: half the buffer is free
            running_before = len(started)
            gates[n].set()
            await eventually(lambda before=running_before: _started_more(started, before))
        # On a store that finishes with a claim (SQLite) a claim waits for a free slot, so it
        # carries outcomes: the buffer stays at 2. Elsewhere the worker claims 2 more at once,
        # while both slots are still busy.
        expected = 4 if isinstance(queue.backend, FinishesWithClaim) else 6
        await eventually(lambda: _count_processing(queue, expected))
        await asyncio.sleep(0.3)  # and no more than that
        assert len(await _processing(queue)) == expected
        assert len(worker.running_jobs) == 2
        for gate in gates.values():
            gate.set()
        for job_id in first:
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)


async def _count_processing(queue: Queue, count: int) -> bool:
    return len(await _processing(queue)) == count


async def _started_more(started: list[int], before: int) -> bool:
    return len(started) > before


async def test_the_worker_freezes_the_collector_only_while_it_runs(queue: Queue) -> None:
    seen: list[int] = []

    @queue.handler("look")
    async def look(payload: dict[str, object]) -> None:
        seen.append(gc.get_freeze_count())

    assert gc.get_freeze_count() == 0
    for freeze in (True, False):
        worker = fast_worker(queue, freeze_gc=freeze)
        async with running(worker):
            job_id = await queue.add_job("look")
            await wait_for_status(queue, job_id, JobStatus.COMPLETED)
        assert gc.get_freeze_count() == 0
    assert seen[0] > 0
    assert seen[1] == 0
