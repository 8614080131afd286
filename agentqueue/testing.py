"""Helpers for testing code that uses agentqueue (in your own test suite).

from agentqueue.testing import FrozenClock, run_due_jobs, assert_enqueued

async def test_signup_sends_welcome_mail():
    queue = Queue("memory://")
    ...                                   # register handlers, call your code
    await assert_enqueued(queue, "send_email", {"to": "a@x.io"})
    counts = await run_due_jobs(queue)    # runs every due job now, in this process
    assert counts["complete"] == 1
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agentqueue.clock import FrozenClock
from agentqueue.models import Job
from agentqueue.queue import Queue
from agentqueue.states import JobStatus

__all__ = ["FrozenClock", "assert_enqueued", "refute_enqueued", "run_due_jobs"]


async def run_due_jobs(
    queue: Queue,
    *,
    job_types: list[str] | None = None,
    concurrency: int = 10,
    max_rounds: int = 1000,
) -> Counter[str]:
    """Run every job that is due now (by the queue's clock) until none is left; return counts.

    Jobs that a handler retries with a delay, durable sleeps and token waits are not due yet:
    move a `FrozenClock` forward (or complete the token) and call again. Counts are outcome
    kinds: complete, retry, fail, cancel, release, and wait (a handler parked its job).
    """
    await queue.open()
    total: Counter[str] = Counter()
    supervisor = queue.supervisor()
    for _ in range(max_rounds):
        # One maintenance pass first: durable waits and tokens whose time came resume.
        await supervisor.run_once(purge=False)
        worker = queue.worker(
            concurrency=concurrency,
            job_types=job_types,
            handle_signals=False,
            ack_delay=0,
            supervise=False,
        )
        counts = await worker.run(once=True)
        if not counts:
            break
        total.update(counts)
    return total


def _matches(job: Job, job_type: str, payload: Any, fields: dict[str, Any]) -> bool:
    if job.job_type != job_type:
        return False
    if payload is not None and job.payload != payload:
        return False
    return all(getattr(job, name) == value for name, value in fields.items())


async def _find(queue: Queue, job_type: str, status: list[JobStatus]) -> list[Job]:
    found: list[Job] = []
    cursor: str | None = None
    while True:
        page = await queue.list_jobs(
            job_type=job_type, status=status, limit=1000, cursor=cursor, order="oldest"
        )
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def assert_enqueued(
    queue: Queue,
    job_type: str,
    payload: Any = None,
    *,
    count: int | None = None,
    status: list[JobStatus] | None = None,
    **fields: Any,
) -> list[Job]:
    """Assert that matching jobs exist (pending by default) and return them.

    `payload` must equal the stored payload when given; `fields` compare other job fields
    (priority=5, tags=[...], queue="ai" …); `count` demands an exact number.
    """
    statuses = status or [JobStatus.PENDING]
    candidates = await _find(queue, job_type, statuses)
    matching = [job for job in candidates if _matches(job, job_type, payload, fields)]
    if (count is None and not matching) or (count is not None and len(matching) != count):
        seen = [(job.id, job.status.value, job.payload) for job in candidates[:20]]
        wanted = "at least one" if count is None else f"exactly {count}"
        raise AssertionError(
            f"expected {wanted} {job_type!r} job(s) with payload={payload!r} {fields or ''} "
            f"in {[s.value for s in statuses]}, found {len(matching)}; "
            f"{job_type!r} jobs there: {seen}"
        )
    return matching


async def refute_enqueued(queue: Queue, job_type: str, payload: Any = None, **fields: Any) -> None:
    """Assert that no pending job of `job_type` (with that payload and fields) exists."""
    matching = [
        job
        for job in await _find(queue, job_type, [JobStatus.PENDING])
        if _matches(job, job_type, payload, fields)
    ]
    if matching:
        raise AssertionError(
            f"expected no pending {job_type!r} job with payload={payload!r}, "
            f"found ids {[job.id for job in matching]}"
        )
