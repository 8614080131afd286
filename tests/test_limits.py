"""Flow limits on every store: concurrency per job type and group, rate limits, pauses."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from agentqueue import FrozenClock, InvalidArgument, JobStatus, Queue
from agentqueue.models import Limit, LimitScope
from agentqueue.testing import run_due_jobs
from tests.worker.worker_kit import eventually, fast_worker, running


class Meter:
    """Counts how many jobs run at once, per key, and the most ever seen."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.done: list[str] = []

    async def run(self, key: str, seconds: float) -> None:
        """Hold one slot of `key` for `seconds`."""
        self.now[key] += 1
        self.peak[key] = max(self.peak[key], self.now[key])
        try:
            await asyncio.sleep(seconds)
        finally:
            self.now[key] -= 1
            self.done.append(key)


def metered(queue: Queue, meter: Meter, *, seconds: float = 0.05) -> None:
    """Register `work` (payload: key) that holds the meter's slot for `seconds`."""

    @queue.handler("work")
    async def work(payload: dict[str, Any]) -> None:
        await meter.run(payload["key"], seconds)

    @queue.handler("other")
    async def other(payload: dict[str, Any]) -> None:
        await meter.run("other", seconds)


async def drain(queue: Queue, count: int, **settings: Any) -> None:
    """Run a 10-slot worker until `count` jobs completed."""

    async def finished() -> bool:
        return (await queue.stats()).totals[JobStatus.COMPLETED] >= count

    async with running(fast_worker(queue, concurrency=10, **settings)):
        await eventually(finished, timeout=20)


async def test_a_job_type_limit_caps_its_running_jobs(queue: Queue) -> None:
    meter = Meter()
    metered(queue, meter)
    stored = await queue.set_limit(job_type="work", max_concurrent=2)
    assert stored is not None
    assert (stored.scope, stored.key, stored.max_concurrent) == (LimitScope.JOB_TYPE, "work", 2)
    await queue.add_jobs([{"job_type": "work", "payload": {"key": "work"}} for _ in range(8)])
    await queue.add_jobs([{"job_type": "other"} for _ in range(4)])
    await drain(queue, 12)
    assert meter.peak["work"] == 2
    assert meter.peak["other"] == 4  # other types are not held back


async def test_a_full_group_does_not_hold_back_the_jobs_behind_it(queue: Queue) -> None:
    meter = Meter()
    metered(queue, meter)
    await queue.set_limit(group="tenant-a", max_concurrent=1)
    # The limited group's jobs come first in claim order.
    await queue.add_jobs(
        [{"job_type": "work", "payload": {"key": "a"}, "group": "tenant-a", "priority": 9}] * 6
        + [{"job_type": "work", "payload": {"key": "b"}, "group": "tenant-b"}] * 4
        + [{"job_type": "work", "payload": {"key": "none"}}] * 3
    )
    await drain(queue, 13)
    assert meter.peak["a"] == 1
    assert meter.peak["b"] == 4
    assert meter.peak["none"] == 3
    # b's jobs did not wait for a's six in turn.
    assert meter.done.index("b") < len(meter.done) - 1 - meter.done[::-1].index("a")


async def test_the_any_group_limit_applies_to_each_group_on_its_own(queue: Queue) -> None:
    meter = Meter()
    metered(queue, meter)
    await queue.set_limit(group="*", max_concurrent=1)
    await queue.set_limit(group="vip", max_concurrent=3)
    jobs = [
        {"job_type": "work", "payload": {"key": group}, "group": group}
        for group in ("x", "y", "vip")
        for _ in range(4)
    ]
    await queue.add_jobs(jobs)
    await drain(queue, 12)
    assert (meter.peak["x"], meter.peak["y"], meter.peak["vip"]) == (1, 1, 3)


async def test_job_type_and_group_limits_both_apply(queue: Queue) -> None:
    meter = Meter()
    metered(queue, meter)
    await queue.set_limit(job_type="work", max_concurrent=3)
    await queue.set_limit(group="g", max_concurrent=2)
    await queue.add_jobs([{"job_type": "work", "payload": {"key": "g"}, "group": "g"}] * 5)
    await queue.add_jobs([{"job_type": "work", "payload": {"key": "h"}, "group": "h"}] * 5)
    await drain(queue, 10)
    assert meter.peak["g"] == 2
    assert meter.peak["g"] + meter.peak["h"] >= 3
    assert meter.peak["h"] <= 3


async def test_a_paused_job_type_starts_nothing_until_resumed(queue: Queue) -> None:
    meter = Meter()
    metered(queue, meter)
    paused = await queue.pause_job_type("work")
    assert paused.paused
    ids = await queue.add_jobs([{"job_type": "work", "payload": {"key": "w"}}] * 3)
    other = await queue.add_job("other")
    # A long poll: only the resume's wake-up can start the paused jobs in time.
    async with running(fast_worker(queue, concurrency=5, poll_interval=30)):

        async def other_done() -> bool:
            job = await queue.get_job(other)
            return job is not None and job.status is JobStatus.COMPLETED

        await eventually(other_done)
        assert await queue.backend.next_due(queue=None, job_types=None) is None
        assert [(await queue.get_job(i)).status for i in ids] == [JobStatus.PENDING] * 3  # type: ignore[union-attr]
        assert await queue.resume_job_type("work") is None  # nothing else was limited

        async def all_done() -> bool:
            return (await queue.stats()).totals[JobStatus.COMPLETED] == 4

        await eventually(all_done, timeout=5)


async def test_pausing_keeps_the_types_other_limits(queue: Queue) -> None:
    await queue.set_limit(job_type="work", max_concurrent=4)
    await queue.pause_job_type("work")
    limit = await queue.get_limit(job_type="work")
    assert limit is not None
    assert (limit.paused, limit.max_concurrent) == (True, 4)
    resumed = await queue.resume_job_type("work")
    assert resumed is not None
    assert (resumed.paused, resumed.max_concurrent) == (False, 4)
    changed = await queue.set_limit(job_type="work", rate_limit=10, rate_period=60)
    assert changed is not None
    assert (changed.max_concurrent, changed.rate_limit, changed.rate_period) == (4, 10, 60)
    assert await queue.set_limit(job_type="work", max_concurrent=None, rate_limit=None) is None
    assert await queue.list_limits() == []


async def test_limits_are_listed_and_removed(queue: Queue) -> None:
    await queue.set_limit(group="b", max_concurrent=1)
    await queue.set_limit(group="*", rate_limit=5)
    await queue.pause_job_type("work")
    listed = [(lim.scope.value, lim.key) for lim in await queue.list_limits()]
    assert listed == [("group", "*"), ("group", "b"), ("job_type", "work")]
    assert all(lim.updated_at is not None for lim in await queue.list_limits())
    assert await queue.remove_limit(group="b")
    assert not await queue.remove_limit(group="b")
    assert await queue.get_limit(group="b") is None
    star = await queue.get_limit(group="*")
    assert star == Limit(
        scope=LimitScope.GROUP, key="*", rate_limit=5, rate_period=1.0, updated_at=star.updated_at
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"max_concurrent": 1}, "exactly one of job_type"),
        ({"job_type": "a", "group": "b", "max_concurrent": 1}, "exactly one of job_type"),
        ({"job_type": "a"}, "give max_concurrent"),
        ({"job_type": "a", "max_concurrent": -1}, "max_concurrent"),
        ({"job_type": "a", "rate_limit": 0}, "rate_limit"),
        ({"job_type": "a", "rate_limit": 5, "rate_period": 0}, "rate_period"),
        ({"job_type": "a", "paused": True}, "pause_job_type"),
        ({"job_type": "bad name!", "max_concurrent": 1}, "bad job type"),
        ({"group": "", "max_concurrent": 1}, "bad group"),
    ],
)
async def test_bad_limits_are_refused_and_nothing_is_stored(
    queue: Queue, call: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await queue.set_limit(**call)
    assert await queue.list_limits() == []


async def test_a_rate_limit_admits_n_starts_per_window(timed: Queue, clock: FrozenClock) -> None:
    queue = timed
    ran: list[int] = []

    @queue.handler("call_api")
    async def call_api(payload: dict[str, Any]) -> None:
        ran.append(payload["n"])

    await queue.set_limit(job_type="call_api", rate_limit=3, rate_period=10)
    await queue.add_jobs([{"job_type": "call_api", "payload": {"n": n}} for n in range(8)])
    await run_due_jobs(queue)
    assert ran == [0, 1, 2]
    due = await queue.backend.next_due(queue=None, job_types=None, now=clock.now())
    assert due == clock.now() + timedelta(seconds=10)  # when the window frees a start
    clock.advance(9.9)
    await run_due_jobs(queue)
    assert len(ran) == 3
    clock.advance(0.1)
    await run_due_jobs(queue)
    assert ran == [0, 1, 2, 3, 4, 5]
    clock.advance(10)
    await run_due_jobs(queue)
    assert ran == list(range(8))


async def test_a_sliding_window_never_admits_more_than_n_in_any_period(
    timed: Queue, clock: FrozenClock
) -> None:
    queue = timed
    starts: list[float] = []
    origin = clock.now()

    @queue.handler("tick")
    async def tick(payload: dict[str, Any]) -> None:
        starts.append((clock.now() - origin).total_seconds())

    await queue.set_limit(group="api", rate_limit=2, rate_period=1)
    await queue.add_jobs([{"job_type": "tick", "group": "api"} for _ in range(10)])
    for _ in range(20):
        await run_due_jobs(queue)
        clock.advance(0.25)
    assert len(starts) == 10
    for first in starts:
        assert sum(1 for t in starts if first <= t < first + 1) <= 2


async def test_a_group_at_zero_concurrency_holds_its_jobs_without_busy_polling(
    queue: Queue,
) -> None:
    await queue.set_limit(group="frozen", max_concurrent=0)
    await queue.add_job("work", {"key": "f"}, group="frozen")
    assert await queue.backend.next_due(queue=None, job_types=None) is None
    assert await run_due_jobs(queue) == {}
