"""`explain_job` on every store: the reasons a job is where it is."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from agentqueue import FrozenClock, JobNotFound, Queue
from agentqueue.models import WorkerInfo
from agentqueue.testing import run_due_jobs


async def codes(queue: Queue, job_id: int) -> list[str]:
    """The reason codes of a job."""
    return [reason.code for reason in (await queue.explain_job(job_id)).reasons]


async def beat(queue: Queue, *, job_types: list[str], queues: list[str] | None = None) -> None:
    """A live worker serving these types."""
    now = queue.clock.now()
    info = WorkerInfo(
        id="w1",
        hostname="h",
        pid=1,
        queues=queues or [],
        job_types=job_types,
        concurrency=2,
        started_at=now,
        last_seen_at=now,
    )
    await queue.backend.beat_worker(info, now=queue.now())


async def test_pending_jobs_explain_schedule_limits_and_missing_workers(
    timed: Queue, clock: FrozenClock
) -> None:
    later = await timed.add_job("report", delay=600)
    explanation = await timed.explain_job(later)
    assert [r.code for r in explanation.reasons] == ["scheduled", "no_live_worker"]
    assert explanation.summary.startswith("not due before")
    assert explanation.reasons[0].details["run_at"] == clock.now() + timedelta(seconds=600)
    due = await timed.add_job("report")
    assert await codes(timed, due) == ["no_live_worker"]
    await beat(timed, job_types=["report"], queues=["default"])
    assert await codes(timed, due) == ["queued"]
    await timed.pause_job_type("report")
    assert await codes(timed, due) == ["job_type_paused"]
    await timed.resume_job_type("report")
    await timed.set_limit(group="g", max_concurrent=0)
    grouped = await timed.add_job("report", group="g")
    [reason] = (await timed.explain_job(grouped)).reasons
    assert (reason.code, reason.details["running"]) == ("limit_reached", 0)
    other_queue = await timed.add_job("report", queue="ai")
    assert await codes(timed, other_queue) == ["no_live_worker"]


async def test_blocked_waiting_and_running_jobs(timed: Queue, clock: FrozenClock) -> None:
    gate = await timed.add_job("gate")
    blocked = await timed.add_job("after", depends_on=[gate])
    [reason] = (await timed.explain_job(blocked)).reasons
    assert (reason.code, reason.details["unmet"]) == (
        "unmet_dependency",
        [{"job_id": gate, "status": "pending"}],
    )

    @timed.handler("approve")
    async def approve(payload: dict[str, Any], ctx: Any) -> None:
        token = await ctx.create_token(timeout=60)
        await ctx.wait_for_token(token)

    waiting = await timed.add_job("approve")
    await run_due_jobs(timed, job_types=["approve"])
    [reason] = (await timed.explain_job(waiting)).reasons
    job = await timed.get_job(waiting)
    assert job is not None
    assert (reason.code, reason.details["token_id"]) == ("waiting_on_token", job.waiting_for)
    assert reason.details["expires_at"] == clock.now() + timedelta(seconds=60)

    [claimed] = await timed.backend.claim(
        worker_id="w-x", queue=None, job_types=["gate"], limit=1, lease_seconds=30, now=clock.now()
    )
    [running] = (await timed.explain_job(claimed.id)).reasons
    assert (running.code, running.details["worker"]) == ("running", "w-x")
    clock.advance(31)
    assert await codes(timed, claimed.id) == ["lease_expired"]


async def test_ended_jobs_explain_how_they_ended(timed: Queue) -> None:
    @timed.handler("boom", max_attempts=2, retry_delay=0)
    async def boom(payload: dict[str, Any]) -> None:
        raise ValueError("bad input")

    failed = await timed.add_job("boom")
    dependent = await timed.add_job("after", depends_on=[failed])
    await run_due_jobs(timed, job_types=["boom"])
    [reason] = (await timed.explain_job(failed)).reasons
    assert reason.code == "attempts_exhausted"
    assert reason.details["attempts"] == 2
    assert "bad input" in reason.message
    assert "Traceback" in reason.details["traceback"]
    assert await codes(timed, dependent) == ["dependency_failed"]
    done = await timed.add_job("fine")

    @timed.handler("fine")
    async def fine(payload: dict[str, Any]) -> None:
        return None

    await run_due_jobs(timed, job_types=["fine"])
    assert await codes(timed, done) == ["completed"]
    cancelled = await timed.add_job("x")
    await timed.cancel_job(cancelled)
    assert await codes(timed, cancelled) == ["cancelled"]
    with pytest.raises(JobNotFound):
        await timed.explain_job(424242)
