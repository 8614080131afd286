"""The event feed: `Queue.events()` (live, cross-connection, resumable, filtered) and
`Queue.subscribe()` (one job's history until it ends)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentqueue import (
    ErrorRecord,
    EventType,
    FailureReason,
    InvalidArgument,
    JobEvent,
    JobNotFound,
    Queue,
)
from agentqueue.backends.base import Lease, Outcome, OutcomeKind
from agentqueue.states import JobStatus
from agentqueue.testing import run_due_jobs
from tests.conftest import eventually


@contextlib.asynccontextmanager
async def live_feed(queue: Queue, **filters: Any) -> AsyncIterator[list[JobEvent]]:
    """Collect `queue.events(**filters)` into a list in a background task."""
    received: list[JobEvent] = []

    async def collect() -> None:
        # Append one by one: the feed never ends, and the test reads `received` while it runs.
        async for event in queue.events(**filters):
            received.append(event)  # noqa: PERF401

    task = asyncio.create_task(collect())
    try:
        yield received
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until_started(received: list[JobEvent], writer: Queue) -> None:
    """Add probe jobs until the feed delivers one: from then on it is surely listening."""

    async def probe() -> bool:
        if not received:
            await writer.add_job("probe")
        return bool(received)

    await eventually(probe, timeout=5, interval=0.02)


async def until_count(received: list[JobEvent], job_ids: set[int], count: int) -> None:
    async def enough() -> bool:
        return len([e for e in received if e.job_id in job_ids]) >= count

    await eventually(enough, timeout=5, interval=0.005)


async def take(feed: AsyncIterator[JobEvent], count: int) -> list[JobEvent]:
    """Read exactly `count` events from `feed` within 5 seconds."""
    got: list[JobEvent] = []
    async with asyncio.timeout(5):
        async for event in feed:
            got.append(event)
            if len(got) == count:
                break
    return got


def assert_gap_free_and_ordered(events: list[JobEvent], history: list[JobEvent]) -> None:
    ids = [e.id for e in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert ids == [e.id for e in history if ids[0] <= e.id <= ids[-1]]


async def complete(queue: Queue, job_id: int, output: Any) -> None:
    jobs = await queue.backend.claim(
        worker_id="w1", queue=None, job_types=None, limit=1, lease_seconds=60
    )
    assert [job.id for job in jobs] == [job_id]
    lease = Lease(job_id, jobs[0].attempts)
    outcome = Outcome(OutcomeKind.COMPLETE, lease, output=output)
    assert await queue.backend.finish(worker_id="w1", outcomes=[outcome]) == set()


async def test_events_yields_only_events_committed_after_it_started_in_order(
    queue: Queue,
) -> None:
    old = await queue.add_job("old")
    async with live_feed(queue) as received:
        await until_started(received, queue)
        a = await queue.add_job("work")
        b = await queue.add_job("work")
        await queue.cancel_job(a)
        await until_count(received, {a, b}, 3)
    assert old not in {e.job_id for e in received}
    mine = [(e.job_id, e.type) for e in received if e.job_id in {a, b}]
    assert mine == [(a, EventType.ADDED), (b, EventType.ADDED), (a, EventType.CANCEL)]
    history = await queue.backend.read_events(after=None, limit=1000)
    assert_gap_free_and_ordered(received, history)


async def test_events_written_by_another_queue_on_the_same_store_arrive(shared_url: str) -> None:
    async with Queue(shared_url) as reader, Queue(shared_url) as writer:
        async with live_feed(reader) as received:
            await until_started(received, writer)
            ids = await writer.add_jobs(
                [{"job_type": "remote", "payload": {"n": n}} for n in range(3)]
            )
            await writer.cancel_job(ids[1])
            await until_count(received, set(ids), 4)
        remote = [(e.job_id, e.type) for e in received if e.job_id in ids]
        assert remote == [
            (ids[0], EventType.ADDED),
            (ids[1], EventType.ADDED),
            (ids[2], EventType.ADDED),
            (ids[1], EventType.CANCEL),
        ]
        cancel = received[-1]
        assert (cancel.job_type, cancel.queue, cancel.status) == (
            "remote",
            "default",
            JobStatus.CANCELLED,
        )
        assert_gap_free_and_ordered(
            received, await reader.backend.read_events(after=None, limit=99)
        )


async def test_after_a_cursor_the_feed_resumes_exactly_where_it_stopped(queue: Queue) -> None:
    ids = await queue.add_jobs([{"job_type": "a"} for _ in range(5)])
    for job_id in ids[:3]:
        await queue.cancel_job(job_id)
    async with contextlib.aclosing(queue.events(from_start=True)) as feed:
        first = await take(feed, 4)
    async with contextlib.aclosing(queue.events(after=first[-1].cursor)) as feed:
        rest = await take(feed, 4)
    everything = first + rest
    assert [e.type.value for e in everything] == ["added"] * 5 + ["cancel"] * 3
    assert [e.job_id for e in everything] == ids + ids[:3]
    assert_gap_free_and_ordered(everything, await queue.backend.read_events(after=None, limit=99))


async def test_a_resumed_feed_also_delivers_later_events(queue: Queue) -> None:
    first = await queue.add_job("a")
    (added,) = await queue.get_job_events(first)
    async with contextlib.aclosing(queue.events(after=added.cursor)) as feed:
        reading = asyncio.ensure_future(take(feed, 1))
        second = await queue.add_job("a")
        async with asyncio.timeout(5):
            (event,) = await reading
    assert (event.job_id, event.type) == (second, EventType.ADDED)


async def test_events_filtered_by_job_id_show_only_that_job(queue: Queue) -> None:
    a, b = await queue.add_jobs([{"job_type": "x"}, {"job_type": "x"}])
    async with contextlib.aclosing(queue.events(from_start=True, job_id=b)) as feed:
        reading = asyncio.ensure_future(take(feed, 2))
        await queue.cancel_job(a)
        await queue.cancel_job(b)
        async with asyncio.timeout(5):
            events = await reading
    assert [(e.job_id, e.type) for e in events] == [(b, EventType.ADDED), (b, EventType.CANCEL)]


async def test_events_filtered_by_job_types_and_queues(queue: Queue) -> None:
    ids = await queue.add_jobs(
        [
            {"job_type": "email", "queue": "mail"},
            {"job_type": "report"},
            {"job_type": "email"},
            {"job_type": "resize", "queue": "media"},
        ]
    )
    async with contextlib.aclosing(queue.events(from_start=True, job_types=["email"])) as feed:
        by_type = await take(feed, 2)
    async with contextlib.aclosing(queue.events(from_start=True, queues=["mail", "media"])) as feed:
        by_queue = await take(feed, 2)
    async with contextlib.aclosing(
        queue.events(from_start=True, job_types=["email"], queues=["default"])
    ) as feed:
        both = await take(feed, 1)
    assert [e.job_id for e in by_type] == [ids[0], ids[2]]
    assert [e.job_id for e in by_queue] == [ids[0], ids[3]]
    assert [e.job_id for e in both] == [ids[2]]


async def test_filtered_live_feeds_skip_other_jobs(queue: Queue) -> None:
    async with live_feed(queue, job_types=["wanted"]) as received:

        async def started() -> bool:
            if not received:
                await queue.add_job("other")
                await queue.add_job("wanted", {"probe": True})
            return bool(received)

        await eventually(started, timeout=5, interval=0.02)
        target = await queue.add_job("wanted")
        await until_count(received, {target}, 1)
    assert {e.job_type for e in received} == {"wanted"}


async def test_subscribe_yields_a_finished_jobs_history_and_stops(queue: Queue) -> None:
    job_id = await queue.add_job("work")
    await complete(queue, job_id, {"answer": 42})
    async with asyncio.timeout(5):
        events = [event async for event in queue.subscribe(job_id)]
    assert [e.type for e in events] == [EventType.ADDED, EventType.CLAIM, EventType.COMPLETE]
    assert events[-1].status is JobStatus.COMPLETED
    job = await queue.get_job(job_id)
    assert job is not None
    assert job.output == {"answer": 42}


async def test_subscribe_follows_a_running_job_until_it_completes(queue: Queue) -> None:
    @queue.handler("double")
    async def double(payload: dict[str, int]) -> int:
        return payload["n"] * 2

    job_id = await queue.add_job("double", {"n": 21})
    await queue.add_job("double", {"n": 1})  # another job the subscription must skip

    async def follow() -> list[JobEvent]:
        return [event async for event in queue.subscribe(job_id)]

    following = asyncio.ensure_future(follow())
    counts = await run_due_jobs(queue)
    async with asyncio.timeout(5):
        events = await following
    assert counts["complete"] == 2
    assert {e.job_id for e in events} == {job_id}
    assert [e.type for e in events] == [EventType.ADDED, EventType.CLAIM, EventType.COMPLETE]
    job = await queue.get_job(job_id)
    assert job is not None
    assert job.output == 42


async def test_subscribe_stops_at_a_cancel_but_not_at_a_cancel_request(queue: Queue) -> None:
    job_id = await queue.add_job("work")
    jobs = await queue.backend.claim(
        worker_id="w1", queue=None, job_types=None, limit=1, lease_seconds=60
    )
    await queue.cancel_job(job_id)  # processing: only a request
    following = asyncio.ensure_future(_collect(queue.subscribe(job_id)))
    done = Outcome(OutcomeKind.CANCEL, Lease(job_id, jobs[0].attempts))
    assert await queue.backend.finish(worker_id="w1", outcomes=[done]) == set()
    async with asyncio.timeout(5):
        events = await following
    assert [e.type for e in events] == [
        EventType.ADDED,
        EventType.CLAIM,
        EventType.CANCEL_REQUESTED,
        EventType.CANCEL,
    ]


async def _collect(feed: AsyncIterator[JobEvent]) -> list[JobEvent]:
    return [event async for event in feed]


async def test_subscribe_to_an_unknown_job_raises_job_not_found(queue: Queue) -> None:
    with pytest.raises(JobNotFound):
        async with asyncio.timeout(5):
            await _collect(queue.subscribe(31337))


async def test_subscribe_follows_a_retried_job_past_its_old_failure(queue: Queue) -> None:
    job_id = await queue.add_job("work")
    jobs = await queue.backend.claim(
        worker_id="w1", queue=None, job_types=None, limit=1, lease_seconds=60
    )
    error = ErrorRecord(
        attempt=1,
        at=jobs[0].started_at or jobs[0].run_at,
        reason=FailureReason.HANDLER_ERROR,
        message="x",
    )
    failed = Outcome(OutcomeKind.FAIL, Lease(job_id, 1), error=error)
    assert await queue.backend.finish(worker_id="w1", outcomes=[failed]) == set()
    await queue.retry_job(job_id)
    following = asyncio.ensure_future(_collect(queue.subscribe(job_id)))
    await complete(queue, job_id, "second time lucky")
    async with asyncio.timeout(5):
        events = await following
    assert [e.type for e in events] == [
        EventType.ADDED,
        EventType.CLAIM,
        EventType.FAIL,
        EventType.RETRY,
        EventType.CLAIM,
        EventType.COMPLETE,
    ]


async def test_a_malformed_cursor_is_refused_with_a_clear_error(queue: Queue) -> None:
    feed = queue.events(after="not-a-cursor")
    with pytest.raises(InvalidArgument, match="cursor"):
        await anext(feed)
    await feed.aclose()
