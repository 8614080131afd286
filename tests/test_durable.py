"""Durable execution on every store: memoized steps, durable sleeps, human-in-the-loop tokens.

Time is a `FrozenClock`: a wait's wake-up and a token's expiry are reached by moving the clock
and running one supervisor pass (`run_due_jobs` does both), never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentqueue import FailureReason, FrozenClock, JobContext, JobStatus, Queue
from agentqueue.errors import JobNotFound, TokenNotFound, TokenNotPending
from agentqueue.models import FOREVER, EventType, TokenStatus
from agentqueue.testing import run_due_jobs
from tests.conftest import eventually
from tests.worker.worker_kit import fast_worker, running, wait_event, wait_for_status

NOON = datetime(2031, 1, 1, 12, tzinfo=UTC)
"""A fixed wake-up time after the frozen clock's start."""


async def _types(queue: Queue, job_id: int) -> list[str]:
    return [event.type.value for event in await queue.get_job_events(job_id)]


async def test_steps_run_once_across_a_durable_sleep(timed: Queue, clock: FrozenClock) -> None:
    effects: Counter[str] = Counter()

    @timed.handler("flow")
    async def flow(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        def effect(name: str) -> dict[str, str]:
            effects[name] += 1
            return {"done": name}

        first = await ctx.step("first", lambda: effect("first"))
        await ctx.wait_for(60)
        second = await ctx.step("second", lambda: effect("second"))
        return {"first": first, "second": second}

    job_id = await timed.add_job("flow", max_attempts=1)
    assert await run_due_jobs(timed) == {"wait": 1}
    parked = await timed.get_job(job_id)
    assert parked is not None
    assert parked.status is JobStatus.WAITING
    assert parked.attempts == 0  # a wait is not a failed attempt
    assert parked.locked_by is None
    assert parked.waiting_for is None
    assert parked.run_at == clock.now() + timedelta(seconds=60)

    clock.advance(30)
    assert await run_due_jobs(timed) == {}  # not yet
    clock.advance(31)
    assert await run_due_jobs(timed) == {"complete": 1}

    done = await timed.get_job(job_id)
    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert done.output == {"first": {"done": "first"}, "second": {"done": "second"}}
    assert effects == {"first": 1, "second": 1}
    steps = await timed.get_steps(job_id)
    assert steps["first"] == {"done": "first"}
    assert steps["second"] == {"done": "second"}
    types = await _types(timed, job_id)
    assert types.count("step") == 3  # first, the wait's wake-up time, second
    assert [t for t in types if t in ("wait", "resume")] == ["wait", "resume"]


async def test_wait_until_and_timedelta_waits(timed: Queue, clock: FrozenClock) -> None:
    @timed.handler("sleepy")
    async def sleepy(payload: dict[str, Any], ctx: JobContext) -> str:
        await ctx.wait_for(timedelta(minutes=1))
        await ctx.wait_until(NOON)
        return "awake"

    job_id = await timed.add_job("sleepy")
    await run_due_jobs(timed)
    clock.advance(61)
    assert await run_due_jobs(timed) == {"wait": 1}  # now the wait_until
    job = await timed.get_job(job_id)
    assert job is not None
    assert (job.status, job.run_at) == (JobStatus.WAITING, NOON)
    clock.set(NOON)
    assert await run_due_jobs(timed) == {"complete": 1}


async def test_a_waiting_job_frees_its_slot_for_other_jobs(timed: Queue) -> None:
    ran: list[str] = []

    @timed.handler("nap")
    async def nap(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append("nap")
        await ctx.wait_for(3600)

    @timed.handler("work")
    async def work(payload: dict[str, Any]) -> None:
        ran.append("work")

    napper = await timed.add_job("nap", priority=10)
    other = await timed.add_job("work")
    counts = await run_due_jobs(timed, concurrency=1)
    assert counts == {"wait": 1, "complete": 1}
    assert ran == ["nap", "work"]
    assert (await timed.get_job(napper)).status is JobStatus.WAITING  # type: ignore[union-attr]
    assert (await timed.get_job(other)).status is JobStatus.COMPLETED  # type: ignore[union-attr]


async def test_token_approval_flow_resumes_the_job_with_the_data(timed: Queue) -> None:
    sent: list[str] = []

    @timed.handler("approve")
    async def approve(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        token = await ctx.create_token(timeout=3600, tags=["approval"])
        await ctx.step("ask", lambda: sent.append(token.id))
        answer = await ctx.wait_for_token(token)
        return {"ok": answer.ok, "data": answer.data}

    job_id = await timed.add_job("approve")
    assert await run_due_jobs(timed) == {"wait": 1}
    waiting = await timed.get_job(job_id)
    assert waiting is not None
    assert waiting.status is JobStatus.WAITING
    assert len(sent) == 1
    token_id = sent[0]
    assert waiting.waiting_for == token_id

    listed = await timed.list_tokens(status="pending", tags=["approval"])
    assert [token.id for token in listed] == [token_id]
    assert listed[0].job_id == job_id
    assert await timed.list_tokens(tags=["other"]) == []

    completed = await timed.complete_token(token_id, {"approved": True, "by": "ana"})
    assert completed.status is TokenStatus.COMPLETED
    assert completed.data == {"approved": True, "by": "ana"}
    resumed = await timed.get_job(job_id)
    assert resumed is not None
    assert resumed.status is JobStatus.PENDING

    assert await run_due_jobs(timed) == {"complete": 1}
    done = await timed.get_job(job_id)
    assert done is not None
    assert done.output == {"ok": True, "data": {"approved": True, "by": "ana"}}
    assert sent == [token_id]  # the replay reused the memoized token and step

    with pytest.raises(TokenNotPending) as again:
        await timed.complete_token(token_id, {"approved": False})
    assert again.value.status == "completed"
    token = await timed.get_token(token_id)
    assert token is not None
    assert token.data == {"approved": True, "by": "ana"}


async def test_a_token_completed_before_the_wait_does_not_block(timed: Queue) -> None:
    @timed.handler("late_waiter")
    async def late_waiter(payload: dict[str, str], ctx: JobContext) -> Any:
        answer = await ctx.wait_for_token(payload["token"])
        return answer.data

    token = await timed.create_token(timeout=60)
    await timed.complete_token(token.id, "yes")
    job_id = await timed.add_job("late_waiter", {"token": token.id})
    assert await run_due_jobs(timed) == {"complete": 1}
    job = await timed.get_job(job_id)
    assert job is not None
    assert job.output == "yes"
    assert "wait" not in await _types(timed, job_id)


async def test_an_expired_token_resumes_its_job_with_ok_false(
    timed: Queue, clock: FrozenClock
) -> None:
    @timed.handler("ask")
    async def ask(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        token = await ctx.create_token(timeout=timedelta(seconds=30))
        answer = await ctx.wait_for_token(token.id)
        return {"ok": answer.ok, "status": answer.token.status.value}

    job_id = await timed.add_job("ask")
    await run_due_jobs(timed)
    (token,) = await timed.list_tokens(job_id=job_id)
    assert token.expires_at == clock.now() + timedelta(seconds=30)

    clock.advance(31)
    report = await timed.maintain(keep_finished=0, keep_events=0)
    assert report.expired_tokens == [token.id]
    assert (await timed.get_token(token.id)).status is TokenStatus.EXPIRED  # type: ignore[union-attr]
    assert await run_due_jobs(timed) == {"complete": 1}
    job = await timed.get_job(job_id)
    assert job is not None
    assert job.output == {"ok": False, "status": "expired"}
    with pytest.raises(TokenNotPending) as late:
        await timed.complete_token(token.id, "too late")
    assert late.value.status == "expired"


async def test_a_token_completed_at_its_expiry_instant_is_expired_not_both(
    timed: Queue, clock: FrozenClock
) -> None:
    token = await timed.create_token(timeout=10)
    clock.advance(10)  # exactly expires_at
    with pytest.raises(TokenNotPending):
        await timed.complete_token(token.id, "now")
    final = await timed.get_token(token.id)
    assert final is not None
    assert final.status is TokenStatus.EXPIRED
    assert final.data is None
    assert (await timed.maintain()).expired_tokens == []  # nothing left to expire


async def test_a_token_completed_just_before_its_expiry_is_completed(
    timed: Queue, clock: FrozenClock
) -> None:
    token = await timed.create_token(timeout=10)
    clock.advance(9.999)
    assert (await timed.complete_token(token.id, 1)).status is TokenStatus.COMPLETED
    clock.advance(60)
    assert (await timed.maintain()).expired_tokens == []
    assert (await timed.get_token(token.id)).status is TokenStatus.COMPLETED  # type: ignore[union-attr]


async def test_fifty_concurrent_completions_give_one_success_and_one_resume(
    timed: Queue,
) -> None:
    @timed.handler("gate")
    async def gate(payload: dict[str, Any], ctx: JobContext) -> Any:
        token = await ctx.create_token()
        return (await ctx.wait_for_token(token)).data

    job_id = await timed.add_job("gate")
    await run_due_jobs(timed)
    (token,) = await timed.list_tokens(job_id=job_id)
    assert token.expires_at is None
    job = await timed.get_job(job_id)
    assert job is not None
    assert job.run_at == FOREVER

    results = await asyncio.gather(
        *(timed.complete_token(token.id, n) for n in range(50)), return_exceptions=True
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, TokenNotPending) for r in losses)
    assert (await _types(timed, job_id)).count("resume") == 1
    assert await run_due_jobs(timed) == {"complete": 1}
    done = await timed.get_job(job_id)
    assert done is not None
    assert done.output == wins[0].data  # type: ignore[union-attr]


async def test_unknown_tokens_are_typed_errors(timed: Queue) -> None:
    with pytest.raises(TokenNotFound):
        await timed.complete_token("tok_nope", 1)
    assert await timed.get_token("tok_nope") is None
    too_long = "tok_" + "x" * 300  # no store could hold it: not found, not a store error
    with pytest.raises(TokenNotFound):
        await timed.complete_token(too_long, 1)
    assert await timed.get_token(too_long) is None

    @timed.handler("lost")
    async def lost(payload: dict[str, Any], ctx: JobContext) -> None:
        await ctx.wait_for_token("tok_nope")

    job_id = await timed.add_job("lost", max_attempts=1)
    assert await run_due_jobs(timed) == {"fail": 1}
    job = await timed.get_job(job_id)
    assert job is not None
    assert "tok_nope" in (job.last_error or "")


async def test_cancelling_a_waiting_job_and_then_completing_its_token(timed: Queue) -> None:
    @timed.handler("held")
    async def held(payload: dict[str, Any], ctx: JobContext) -> None:
        await ctx.wait_for_token(await ctx.create_token())

    job_id = await timed.add_job("held")
    await run_due_jobs(timed)
    (token,) = await timed.list_tokens(job_id=job_id)
    cancelled = await timed.cancel_job(job_id)
    assert cancelled.status is JobStatus.CANCELLED
    assert (await timed.complete_token(token.id, "late")).status is TokenStatus.COMPLETED
    job = await timed.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELLED
    assert await run_due_jobs(timed) == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("twice", "used twice"),
        ("not_json", "not plain JSON data"),
        ("reserved", "reserved"),
    ],
)
async def test_bad_steps_fail_the_attempt_with_a_clear_message(
    timed: Queue, body: str, message: str
) -> None:
    @timed.handler("bad_step")
    async def bad_step(payload: dict[str, str], ctx: JobContext) -> None:
        if payload["body"] == "twice":
            await ctx.step("same", lambda: 1)
            await ctx.step("same", lambda: 2)
        elif payload["body"] == "not_json":
            await ctx.step("thing", lambda: object())
        else:
            await ctx.step("aq:wait:1", lambda: 1)

    job_id = await timed.add_job("bad_step", {"body": body}, max_attempts=1)
    assert await run_due_jobs(timed) == {"fail": 1}
    job = await timed.get_job(job_id)
    assert job is not None
    assert message in (job.last_error or "")


async def test_a_failed_attempt_keeps_its_completed_steps_for_the_retry(timed: Queue) -> None:
    effects: Counter[str] = Counter()

    @timed.handler("flaky_flow")
    async def flaky_flow(payload: dict[str, Any], ctx: JobContext) -> int:
        async def charge() -> int:
            effects["charge"] += 1
            return 42

        amount = await ctx.step("charge", charge)
        if ctx.attempt == 1:
            raise RuntimeError("network blip after the charge")
        return amount

    job_id = await timed.add_job("flaky_flow", max_attempts=2, retry_delay=0)
    counts = await run_due_jobs(timed)
    assert counts == {"retry": 1, "complete": 1}
    job = await timed.get_job(job_id)
    assert job is not None
    assert job.output == 42
    assert effects == {"charge": 1}


async def test_set_output_is_stored_while_running_and_wins_over_the_return_value(
    queue: Queue,
) -> None:
    shown = asyncio.Event()
    finish = asyncio.Event()

    @queue.handler("reporter")
    async def reporter(payload: dict[str, Any], ctx: JobContext) -> str:
        ctx.set_progress(40, "half way")
        ctx.set_output({"partial": True})
        shown.set()
        await asyncio.wait_for(finish.wait(), 10)
        return "ignored"

    job_id = await queue.add_job("reporter")
    async with running(fast_worker(queue)):
        await wait_event(shown)

        async def stored() -> bool:
            job = await queue.get_job(job_id)
            return job is not None and job.output == {"partial": True} and job.progress == 40

        await eventually(stored)
        live = await queue.get_job(job_id)
        assert live is not None
        assert live.status is JobStatus.PROCESSING
        finish.set()
        done = await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    assert done.output == {"partial": True}
    events = await queue.get_job_events(job_id)
    output_events = [e for e in events if e.type is EventType.OUTPUT]
    assert len(output_events) == 1
    assert [e.type for e in events if e.type is EventType.PROGRESS][:1] == [EventType.PROGRESS]


async def test_retention_deletes_old_finished_jobs_only(timed: Queue, clock: FrozenClock) -> None:
    @timed.handler("short")
    async def short(payload: dict[str, Any], ctx: JobContext) -> None:
        await ctx.step("s", lambda: 1)

    old = await timed.add_job("short")
    await run_due_jobs(timed)
    clock.advance(days=8)
    fresh = await timed.add_job("short")
    await run_due_jobs(timed)
    waiting_forever = await timed.add_job("short", delay=10**6)

    kept = await timed.maintain(keep_finished=0, keep_events=0)
    assert (kept.deleted_jobs, kept.deleted_events) == (0, 0)
    report = await timed.maintain(keep_finished=7, keep_events=30)
    assert report.deleted_jobs == 1
    assert await timed.get_job(old) is None
    with pytest.raises(JobNotFound):
        await timed.get_job_events(old)
    assert await timed.backend.job_events(old) == []
    assert await timed.get_steps(old) == {}
    assert (await timed.get_job(fresh)).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    assert (await timed.get_job(waiting_forever)).status is JobStatus.PENDING  # type: ignore[union-attr]
    assert (await timed.maintain(keep_finished=7)).deleted_jobs == 0


async def test_old_events_of_kept_jobs_are_deleted_by_event_retention(
    timed: Queue, clock: FrozenClock
) -> None:
    @timed.handler("noop")
    async def noop(payload: dict[str, Any]) -> None:
        return None

    old = await timed.add_job("noop")
    await run_due_jobs(timed)
    clock.advance(days=3)
    recent = await timed.add_job("noop")
    await run_due_jobs(timed)
    report = await timed.maintain(keep_finished=30, keep_events=2)
    assert report.deleted_jobs == 0
    assert report.deleted_events == 3  # added, claim, complete of the old job
    assert await timed.get_job(old) is not None
    assert await timed.get_job_events(old) == []
    assert [e.type for e in await timed.get_job_events(recent)] == [
        EventType.ADDED,
        EventType.CLAIM,
        EventType.COMPLETE,
    ]


async def test_a_job_whose_worker_died_on_its_last_attempt_ends_failed(
    timed: Queue, clock: FrozenClock
) -> None:
    job_id = await timed.add_job("orphan", max_attempts=1)
    # A worker claims it and dies: no heartbeat, no outcome, ever.
    [claimed] = await timed.backend.claim(
        worker_id="dead-worker",
        queue=None,
        job_types=None,
        limit=1,
        lease_seconds=30,
        now=clock.now(),
    )
    assert claimed.id == job_id
    clock.advance(29)
    assert (await timed.maintain()).rescued == []
    clock.advance(2)
    assert (await timed.maintain()).rescued == [job_id]
    job = await timed.get_job(job_id)
    assert job is not None
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, FailureReason.LEASE_EXPIRED)
    assert await run_due_jobs(timed) == {}
