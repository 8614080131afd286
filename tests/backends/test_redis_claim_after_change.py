"""Redis: `claim_after_change`, a blocking read of the events stream pipelined before the claim
script."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentqueue import Queue
from agentqueue.backends.redis import RedisBackend
from agentqueue.models import Job
from tests.conftest import eventually


def backend_of(queue: Queue) -> RedisBackend:
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    return backend


async def claim_after_change(
    queue: Queue,
    *,
    timeout: float = 5.0,
    interrupt: asyncio.Event | None = None,
    since: int | None = None,
    worker_id: str = "w",
) -> list[Job]:
    store = backend_of(queue)
    return await store.claim_after_change(
        worker_id=worker_id,
        queue=None,
        job_types=None,
        limit=5,
        lease_seconds=30,
        since=store.change_token() if since is None else since,
        timeout=timeout,
        interrupt=interrupt or asyncio.Event(),
    )


async def idle_claim(queue: Queue) -> None:
    """A claim that finds nothing: the next `claim_after_change` waits from its counter."""
    found = await queue.backend.claim(
        worker_id="w", queue=None, job_types=None, limit=5, lease_seconds=30
    )
    assert found == []


async def test_an_insert_by_another_process_is_claimed_within_100_ms(redis_url: str) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        await producer.add_job("warm-up")
        assert len(await claim_after_change(worker_side, timeout=1)) == 1
        for n in range(3):
            waiting = asyncio.ensure_future(claim_after_change(worker_side))
            await asyncio.sleep(0.05)
            assert not waiting.done(), "claimed without a change"
            started = time.monotonic()
            job_id = await producer.add_job("hello", {"n": n})
            async with asyncio.timeout(1):
                jobs = await waiting
            assert time.monotonic() - started < 0.1
            assert [(job.id, job.status, job.locked_by) for job in jobs] == [
                (job_id, "processing", "w")
            ]


async def test_a_change_after_the_last_claim_claims_at_once(redis_url: str) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        await idle_claim(worker_side)
        job_id = await producer.add_job("between-the-claim-and-the-wait")
        started = time.monotonic()
        # The token is newer than the insert here; the worker's last claim is not.
        jobs = await claim_after_change(worker_side, since=0)
        assert [job.id for job in jobs] == [job_id]
        assert time.monotonic() - started < 0.5


async def test_a_quiet_wait_claims_at_its_timeout(redis_url: str) -> None:
    async with Queue(redis_url) as worker_side:
        soon = await worker_side.add_job("soon", delay=0.2)
        await idle_claim(worker_side)
        started = time.monotonic()
        jobs = await claim_after_change(worker_side, timeout=0.3)
        assert 0.25 < time.monotonic() - started < 1.5
        assert [job.id for job in jobs] == [soon]  # due by then: the timed-out claim took it


async def test_an_interrupt_claims_at_once_and_leaves_the_connections_usable(
    redis_url: str,
) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        await idle_claim(worker_side)
        for _ in range(5):
            interrupt = asyncio.Event()
            waiting = asyncio.ensure_future(claim_after_change(worker_side, interrupt=interrupt))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            started = time.monotonic()
            interrupt.set()
            async with asyncio.timeout(1):
                assert await waiting == []
            assert time.monotonic() - started < 0.2
        # Set before the call: no wait at all.
        interrupt = asyncio.Event()
        interrupt.set()
        async with asyncio.timeout(1):
            assert await claim_after_change(worker_side, interrupt=interrupt) == []
        # Every reply was read: the pool's connections answer the next calls correctly.
        job_id = await producer.add_job("after")
        assert [job.id for job in await claim_after_change(worker_side, timeout=1)] == [job_id]
        assert (await worker_side.stats()).totals.get("processing") == 1


async def test_several_waiting_workers_each_claim_a_different_job(redis_url: str) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        workers = [f"w{n}" for n in range(3)]
        for worker_id in workers:
            found = await worker_side.backend.claim(
                worker_id=worker_id, queue=None, job_types=None, limit=1, lease_seconds=30
            )
            assert found == []
        waiting = [
            asyncio.ensure_future(claim_after_change(worker_side, worker_id=w)) for w in workers
        ]
        await asyncio.sleep(0.05)
        ids = await producer.add_jobs([{"job_type": "x"}] * 3)
        async with asyncio.timeout(5):
            results = await asyncio.gather(*waiting)  # all woken by the one insert
        claimed = [job.id for jobs in results for job in jobs]
        # Each job once; a worker that found its job taken came back empty.
        assert sorted(claimed) == sorted(set(claimed))
        left = await worker_side.backend.claim(
            worker_id="late", queue=None, job_types=None, limit=5, lease_seconds=30
        )
        assert sorted(claimed + [job.id for job in left]) == ids


async def test_a_script_the_server_forgot_still_claims_after_the_change(redis_url: str) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        await idle_claim(worker_side)
        client = backend_of(worker_side)._db  # pyright: ignore[reportPrivateUsage]
        library = client._scripts["claim"].function  # pyright: ignore[reportPrivateUsage]
        # As after a restart without persistence, or FUNCTION FLUSH.
        await client.call(lambda r: r.function_delete(library))
        waiting = asyncio.ensure_future(claim_after_change(worker_side))
        await asyncio.sleep(0.05)
        job_id = await producer.add_job("hello")
        async with asyncio.timeout(2):
            assert [job.id for job in await waiting] == [job_id]
        assert await client.call(lambda r: r.function_list(library))


async def test_an_idle_worker_claims_with_the_change_and_stops_promptly(redis_url: str) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        started: list[float] = []

        @worker_side.handler("hello")
        async def hello(payload: dict[str, Any]) -> None:
            started.append(time.monotonic())

        store = backend_of(worker_side)
        plain_claims = 0
        original = store.claim

        async def counted(**options: Any) -> list[Job]:
            nonlocal plain_claims
            plain_claims += 1
            return await original(**options)

        store.claim = counted  # type: ignore[method-assign]
        worker = worker_side.worker(concurrency=2, poll_interval=5.0, handle_signals=False)
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.sleep(0.3)  # idle: waiting in claim_after_change
            claims_before = plain_claims
            for n in range(3):
                sent = time.monotonic()
                await producer.add_job("hello")

                async def ran(count: int = n + 1) -> bool:
                    return len(started) >= count

                await eventually(ran, timeout=3)
                assert started[-1] - sent < 0.5
                await asyncio.sleep(0.05)
            # Each job came with the wait's own claim: no claim round trip after a wake-up.
            assert plain_claims == claims_before
        finally:
            stop_at = time.monotonic()
            worker.request_stop()
            async with asyncio.timeout(2):
                await task
        assert time.monotonic() - stop_at < 0.5  # the wait was interrupted, not timed out
        assert (await worker_side.stats()).totals.get("completed") == 3


async def test_jobs_a_stopping_worker_claimed_in_its_wait_go_back_to_pending(
    redis_url: str,
) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:

        @worker_side.handler("hello")
        async def hello(payload: dict[str, Any]) -> None: ...

        for _ in range(5):
            worker = worker_side.worker(concurrency=2, poll_interval=5.0, handle_signals=False)
            task = asyncio.create_task(worker.run())
            await asyncio.sleep(0.1)
            job_id = await producer.add_job("hello")
            worker.request_stop()  # racing the claim that the insert set off
            async with asyncio.timeout(3):
                await task
            job = await worker_side.get_job(job_id)
            assert job is not None
            assert job.status in ("pending", "completed"), job.status
