"""Finished jobs per minute (the dashboard's charts), on every store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentqueue import FrozenClock, Queue
from agentqueue.errors import InvalidArgument
from agentqueue.testing import run_due_jobs
from agentqueue.throughput import ThroughputReader

# A minute boundary plus 10 s: the jobs below finish in known buckets.
START = datetime(2030, 1, 7, 9, 0, 10, tzinfo=UTC)


def _handlers(queue: Queue) -> None:
    @queue.handler("ok")
    async def ok(payload: dict[str, Any]) -> None:
        return None

    @queue.handler("bad")
    async def bad(payload: dict[str, Any]) -> None:
        raise RuntimeError("down")


async def _finish(queue: Queue, ok: int, bad: int, cancelled: int = 0) -> None:
    """Finish `ok` completed, `bad` failed and `cancelled` cancelled jobs now."""
    if ok:
        await queue.add_jobs([{"job_type": "ok"} for _ in range(ok)])
    for _ in range(bad):
        await queue.add_job("bad", max_attempts=1)
    for _ in range(cancelled):
        await queue.cancel_job(await queue.add_job("never"))
    await run_due_jobs(queue, job_types=["ok", "bad"])


async def test_throughput_counts_finished_jobs_per_minute_with_no_gaps(
    timed: Queue, clock: FrozenClock
) -> None:
    _handlers(timed)
    clock.set(START)
    await _finish(timed, ok=3, bad=1, cancelled=1)
    clock.advance(minutes=2)
    await _finish(timed, ok=1, bad=2)
    await timed.add_job("ok", delay=3600)  # pending: not counted

    found = await timed.throughput(buckets=5)
    assert found.bucket_seconds == 60
    assert found.until == clock.now()
    assert found.since == datetime(2030, 1, 7, 8, 58, tzinfo=UTC)
    assert [b.start.minute for b in found.buckets] == [58, 59, 0, 1, 2]
    counts = [(b.completed, b.failed, b.cancelled) for b in found.buckets]
    assert counts == [(0, 0, 0), (0, 0, 0), (3, 1, 1), (0, 0, 0), (1, 2, 0)]
    assert found.buckets[2].failure_rate == pytest.approx(0.25)
    assert found.buckets[1].failure_rate is None
    data = found.model_dump(mode="json")
    assert data["buckets"][4]["failure_rate"] == pytest.approx(2 / 3)

    # A window that ends before the second batch does not see it.
    earlier = await timed.throughput(buckets=2, until=START + timedelta(seconds=30))
    assert [(b.completed, b.failed) for b in earlier.buckets] == [(0, 0), (3, 1)]
    wide = await timed.throughput(buckets=1, bucket_seconds=3600)
    assert (wide.buckets[0].completed, wide.buckets[0].failed) == (4, 3)


async def test_a_retried_job_leaves_the_counts(timed: Queue, clock: FrozenClock) -> None:
    _handlers(timed)
    clock.set(START)
    await _finish(timed, ok=0, bad=1)
    assert (await timed.throughput(buckets=1)).buckets[0].failed == 1
    failed = (await timed.list_jobs(status="failed")).items[0]
    await timed.retry_job(failed.id)
    assert (await timed.throughput(buckets=1)).buckets[0].failed == 0


async def test_the_reader_keeps_settled_minutes_and_reads_only_the_recent_ones(
    timed: Queue, clock: FrozenClock
) -> None:
    _handlers(timed)
    clock.set(START)
    await _finish(timed, ok=2, bad=0)
    reader = ThroughputReader(timed, settle=15.0)
    clock.advance(minutes=3)
    first = await reader.read(buckets=4)
    assert [b.completed for b in first.buckets] == [2, 0, 0, 0]
    # The minute of the two jobs settled and was kept: purging them does not change the chart
    # (the reader never asks the store about that minute again), new jobs in the last one do.
    await timed.purge_jobs(status="completed")
    await _finish(timed, ok=1, bad=1)
    second = await reader.read(buckets=4)
    assert [(b.completed, b.failed) for b in second.buckets] == [(2, 0), (0, 0), (0, 0), (1, 1)]
    # Past the window the kept minute is dropped.
    clock.advance(minutes=4)
    third = await reader.read(buckets=4)
    assert [(b.completed, b.failed) for b in third.buckets] == [(0, 0)] * 4


@pytest.mark.parametrize(("buckets", "width"), [(0, 60), (1441, 60), (10, 0), (10, 86_401)])
async def test_a_window_out_of_range_is_refused(buckets: int, width: int) -> None:
    # Checked before the store is asked: one store is enough.
    async with Queue("memory://") as queue:
        with pytest.raises(InvalidArgument):
            await queue.throughput(buckets=buckets, bucket_seconds=width)
