"""`agentqueue.testing`: run_due_jobs, assert_enqueued, refute_enqueued and FrozenClock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentqueue import EventType, FrozenClock, Queue
from agentqueue.states import JobStatus
from agentqueue.testing import assert_enqueued, refute_enqueued, run_due_jobs

T0 = datetime(2030, 3, 1, 8, 0, tzinfo=UTC)


def register_echo(queue: Queue) -> list[Any]:
    seen: list[Any] = []

    @queue.handler("echo")
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        seen.append(payload)
        return {"echo": payload}

    return seen


async def test_run_due_jobs_runs_every_due_job_and_counts_the_outcomes(queue: Queue) -> None:
    seen = register_echo(queue)
    ids = await queue.add_jobs([{"job_type": "echo", "payload": {"n": n}} for n in range(12)])
    later = await queue.add_job("echo", {"n": "later"}, delay=3600)
    counts = await run_due_jobs(queue, concurrency=5)
    assert counts == {"complete": 12}
    assert sorted(p["n"] for p in seen) == list(range(12))
    for n, job_id in enumerate(ids):
        job = await queue.get_job(job_id)
        assert job is not None
        assert (job.status, job.output) == (JobStatus.COMPLETED, {"echo": {"n": n}})
    pending = await queue.get_job(later)
    assert pending is not None
    assert pending.status is JobStatus.PENDING


async def test_run_due_jobs_also_runs_jobs_enqueued_by_handlers(queue: Queue) -> None:
    register_echo(queue)

    @queue.handler("fan_out")
    async def fan_out(payload: dict[str, int]) -> None:
        await queue.add_jobs(
            [{"job_type": "echo", "payload": {"i": i}} for i in range(payload["n"])]
        )

    await queue.add_job("fan_out", {"n": 3})
    counts = await run_due_jobs(queue)
    assert counts == {"complete": 4}
    await assert_enqueued(queue, "echo", count=3, status=[JobStatus.COMPLETED])


async def test_run_due_jobs_can_be_limited_to_some_job_types(queue: Queue) -> None:
    register_echo(queue)

    @queue.handler("other")
    async def other(payload: Any) -> None:
        return None

    echo_id = await queue.add_job("echo", {"a": 1})
    other_id = await queue.add_job("other")
    assert await run_due_jobs(queue, job_types=["other"]) == {"complete": 1}
    echo_job, other_job = await queue.get_job(echo_id), await queue.get_job(other_id)
    assert echo_job is not None
    assert other_job is not None
    assert (echo_job.status, other_job.status) == (JobStatus.PENDING, JobStatus.COMPLETED)


async def test_run_due_jobs_on_an_empty_queue_runs_nothing(queue: Queue) -> None:
    assert await run_due_jobs(queue) == {}


async def test_assert_enqueued_finds_matching_pending_jobs(queue: Queue) -> None:
    first = await queue.add_job("send_email", {"to": "a@x.io"}, priority=5, tags=["welcome"])
    await queue.add_job("send_email", {"to": "b@x.io"})
    found = await assert_enqueued(queue, "send_email", {"to": "a@x.io"})
    assert [job.id for job in found] == [first]
    by_fields = await assert_enqueued(queue, "send_email", priority=5, tags=["welcome"])
    assert [job.id for job in by_fields] == [first]
    assert len(await assert_enqueued(queue, "send_email", count=2)) == 2


async def test_assert_enqueued_fails_with_a_message_showing_what_is_there(queue: Queue) -> None:
    other = await queue.add_job("send_email", {"to": "b@x.io"})
    with pytest.raises(AssertionError) as caught:
        await assert_enqueued(queue, "send_email", {"to": "a@x.io"})
    message = str(caught.value)
    assert "'send_email'" in message
    assert "{'to': 'a@x.io'}" in message
    assert "found 0" in message
    assert f"({other}, 'pending', {{'to': 'b@x.io'}})" in message


async def test_assert_enqueued_fails_when_the_count_differs(queue: Queue) -> None:
    await queue.add_jobs([{"job_type": "ping"}, {"job_type": "ping"}])
    with pytest.raises(AssertionError, match=r"exactly 3 'ping'.*found 2"):
        await assert_enqueued(queue, "ping", count=3)
    with pytest.raises(AssertionError, match="at least one 'pong'"):
        await assert_enqueued(queue, "pong")


async def test_assert_enqueued_ignores_jobs_that_are_no_longer_pending(queue: Queue) -> None:
    job_id = await queue.add_job("ping")
    await queue.cancel_job(job_id)
    with pytest.raises(AssertionError, match="found 0"):
        await assert_enqueued(queue, "ping")
    found = await assert_enqueued(queue, "ping", status=[JobStatus.CANCELLED])
    assert [job.id for job in found] == [job_id]


async def test_refute_enqueued_passes_when_no_matching_job_is_pending(queue: Queue) -> None:
    await queue.add_job("send_email", {"to": "b@x.io"})
    cancelled = await queue.add_job("report")
    await queue.cancel_job(cancelled)
    await refute_enqueued(queue, "send_email", {"to": "a@x.io"})
    await refute_enqueued(queue, "report")
    await refute_enqueued(queue, "send_email", priority=3)
    with pytest.raises(AssertionError):
        await refute_enqueued(queue, "send_email")


async def test_refute_enqueued_fails_naming_the_ids_found(queue: Queue) -> None:
    job_id = await queue.add_job("send_email", {"to": "a@x.io"})
    with pytest.raises(AssertionError) as caught:
        await refute_enqueued(queue, "send_email", {"to": "a@x.io"})
    assert f"found ids [{job_id}]" in str(caught.value)
    assert "'send_email'" in str(caught.value)


async def test_a_retried_job_becomes_due_only_after_the_clock_moves(store_url: str) -> None:
    clock = FrozenClock(T0)
    calls: list[int] = []
    async with Queue(store_url, clock=clock) as queue:

        @queue.handler("flaky", retry_delay=30, retry_backoff=False, max_attempts=3)
        async def flaky(payload: Any) -> str:
            calls.append(len(calls) + 1)
            if len(calls) == 1:
                raise RuntimeError("first try fails")
            return "ok"

        job_id = await queue.add_job("flaky")
        assert await run_due_jobs(queue) == {"retry": 1}
        job = await queue.get_job(job_id)
        assert job is not None
        assert (job.status, job.attempts) == (JobStatus.PENDING, 1)
        assert job.run_at == T0 + timedelta(seconds=30)
        assert job.error_history[0].message.endswith("first try fails")
        assert await run_due_jobs(queue) == {}
        clock.advance(29)
        assert await run_due_jobs(queue) == {}
        clock.advance(1)
        assert await run_due_jobs(queue) == {"complete": 1}
        done = await queue.get_job(job_id)
        assert done is not None
        assert (done.status, done.output, done.attempts) == (JobStatus.COMPLETED, "ok", 2)
        assert done.completed_at == T0 + timedelta(seconds=30)
        assert calls == [1, 2]
        types = [e.type for e in await queue.get_job_events(job_id)]
        assert types == [
            EventType.ADDED,
            EventType.CLAIM,
            EventType.RETRY_LATER,
            EventType.CLAIM,
            EventType.COMPLETE,
        ]


def test_frozen_clock_stands_still_until_moved() -> None:
    clock = FrozenClock(T0)
    assert clock.now() == clock.now() == T0
    assert clock.advance(90) == T0 + timedelta(seconds=90)
    assert clock.advance(minutes=1) == T0 + timedelta(seconds=150)
    clock.set(T0)
    assert clock.now() == T0


def test_frozen_clock_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        FrozenClock(datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        FrozenClock(T0).set(datetime(2030, 1, 1))
