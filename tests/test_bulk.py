"""Bulk cancel, retry and edit with a dry-run preview, on every store."""

from __future__ import annotations

from typing import Any

import pytest

from agentqueue import JobStatus, Queue
from agentqueue.errors import InvalidArgument
from agentqueue.testing import run_due_jobs


async def _statuses(queue: Queue, ids: list[int]) -> list[JobStatus]:
    return [job.status for job in [await queue.get_job(i) for i in ids] if job is not None]


async def test_cancel_jobs_previews_then_cancels_only_the_matching_active_jobs(
    queue: Queue,
) -> None:
    mail = await queue.add_jobs([{"job_type": "mail", "tags": ["bulk"]} for _ in range(12)])
    other = await queue.add_job("report", tags=["bulk"])
    untagged = await queue.add_job("mail")

    preview = await queue.cancel_jobs(job_type="mail", tags=["bulk"], dry_run=True)
    assert (preview.dry_run, preview.matched, preview.changed) == (True, 12, 0)
    assert [job.id for job in preview.sample] == mail[:10]
    assert set(await _statuses(queue, mail)) == {JobStatus.PENDING}

    done = await queue.cancel_jobs(job_type="mail", tags=["bulk"])
    assert (done.dry_run, done.matched, done.changed, done.skipped) == (False, 12, 12, [])
    assert set(await _statuses(queue, mail)) == {JobStatus.CANCELLED}
    assert await _statuses(queue, [other, untagged]) == [JobStatus.PENDING] * 2
    again = await queue.cancel_jobs(job_type="mail", tags=["bulk"])
    assert again.matched == 0


async def test_retry_jobs_redrives_failed_jobs_keeping_their_configuration(
    queue: Queue,
) -> None:
    @queue.handler("flaky")
    async def flaky(payload: dict[str, Any]) -> None:
        raise RuntimeError("down")

    ids = [await queue.add_job("flaky", {"n": n}, max_attempts=1, priority=n) for n in range(3)]
    await run_due_jobs(queue)
    assert set(await _statuses(queue, ids)) == {JobStatus.FAILED}
    assert (await queue.retry_jobs(status="failed", dry_run=True)).matched == 3
    result = await queue.retry_jobs(status="failed")
    assert result.changed == 3
    for n, job_id in enumerate(ids):
        job = await queue.get_job(job_id)
        assert job is not None
        assert (job.status, job.attempts, job.priority, job.max_attempts) == (
            JobStatus.PENDING,
            0,
            n,
            1,
        )


async def test_edit_pending_jobs_changes_every_match_and_validates_first(queue: Queue) -> None:
    ids = await queue.add_jobs([{"job_type": "mail", "queue": "slow"} for _ in range(3)])
    with pytest.raises(InvalidArgument):
        await queue.edit_pending_jobs({"priority": "urgent"}, queue="slow")
    with pytest.raises(InvalidArgument):
        await queue.edit_pending_jobs({}, queue="slow")
    result = await queue.edit_pending_jobs({"priority": 9, "queue": "fast"}, queue="slow")
    assert result.changed == 3
    jobs = [await queue.get_job(i) for i in ids]
    assert [(j.priority, j.queue) for j in jobs if j is not None] == [(9, "fast")] * 3


async def test_a_status_the_operation_does_not_apply_to_is_refused(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="does not apply"):
        await queue.cancel_jobs(status="completed")
    with pytest.raises(InvalidArgument, match="bad status"):
        await queue.retry_jobs(status="exploded")
    with pytest.raises(InvalidArgument, match="every match"):
        await queue.cancel_jobs(limit=5)


async def test_purge_jobs_previews_then_deletes_only_finished_matches(queue: Queue) -> None:
    @queue.handler("done")
    async def done(payload: dict[str, Any]) -> None:
        return None

    finished = await queue.add_jobs([{"job_type": "done", "tags": ["old"]} for _ in range(4)])
    await run_due_jobs(queue)
    cancelled = await queue.add_job("report", tags=["old"])
    await queue.cancel_job(cancelled)
    active = await queue.add_job("report", tags=["old"])
    other = await queue.add_job("done", tags=["keep"])
    await run_due_jobs(queue, job_types=["done"])
    newest = await queue.add_job("later")  # SQLite never deletes its newest job: keep one after

    preview = await queue.purge_jobs(tags=["old"], dry_run=True)
    assert (preview.matched, preview.changed) == (5, 0)
    assert {job.id for job in preview.sample} == {*finished, cancelled}
    assert await queue.get_job(finished[0]) is not None

    result = await queue.purge_jobs(tags=["old"])
    assert (result.matched, result.changed, result.skipped) == (5, 5, [])
    for job_id in (*finished, cancelled):
        assert await queue.get_job(job_id) is None
        assert await queue.backend.job_events(job_id) == []  # its history went with it
    assert [await queue.get_job(i) is not None for i in (active, other, newest)] == [True] * 3
    only_failed = await queue.purge_jobs(status="failed")
    assert only_failed.matched == 0


async def test_purge_jobs_refuses_active_statuses(queue: Queue) -> None:
    await queue.add_job("report")
    with pytest.raises(InvalidArgument, match="status pending does not apply"):
        await queue.purge_jobs(status="pending")
    assert (await queue.stats()).totals[JobStatus.PENDING] == 1
