"""Job dependencies on every store: chains, fan-in, tag drains, cascade-cancel, retries."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pytest

from agentqueue import DependencyInvalid, FailureReason, InvalidArgument, JobStatus, Queue
from agentqueue.models import EventType
from agentqueue.testing import run_due_jobs

B, P, C, F, X = (
    JobStatus.BLOCKED,
    JobStatus.PENDING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)


async def statuses(queue: Queue, *ids: int) -> list[JobStatus]:
    """The statuses of `ids`, in order."""
    found = []
    for job_id in ids:
        job = await queue.get_job(job_id)
        assert job is not None
        found.append(job.status)
    return found


def recording(queue: Queue, ran: list[str], *, failing: Collection[str] = ()) -> None:
    """Register a handler `step` that records its payload's name (and fails for `failing`)."""

    @queue.handler("step", max_attempts=1)
    async def step(payload: dict[str, Any]) -> str:
        ran.append(payload["name"])
        if payload["name"] in failing:
            raise RuntimeError(f"{payload['name']} broke")
        return payload["name"]


async def test_a_chain_runs_in_order_and_each_job_waits_blocked(queue: Queue) -> None:
    ran: list[str] = []
    recording(queue, ran)
    first = await queue.add_job("step", {"name": "a"})
    second = await queue.add_job("step", {"name": "b"}, depends_on=[first])
    third = await queue.add_job("step", {"name": "c"}, depends_on=[second])
    assert await statuses(queue, first, second, third) == [P, B, B]
    job = await queue.get_job(third)
    assert job is not None
    assert job.depends_on == [second]
    stats = await queue.stats()
    assert (stats.totals[B], stats.totals[P]) == (2, 1)

    await run_due_jobs(queue)
    assert ran == ["a", "b", "c"]
    assert await statuses(queue, first, second, third) == [C, C, C]
    events = [event.type for event in await queue.get_job_events(second)]
    assert events[:3] == [EventType.ADDED, EventType.UNBLOCK, EventType.CLAIM]
    added = (await queue.get_job_events(second))[0]
    assert added.status is B


async def test_fan_in_waits_for_every_prerequisite(queue: Queue) -> None:
    ran: list[str] = []
    recording(queue, ran)
    parts = [await queue.add_job("step", {"name": f"part{n}"}, queue="parts") for n in range(3)]
    merge = await queue.add_job("step", {"name": "merge"}, depends_on=parts)
    await run_due_jobs(queue, job_types=["step"])
    assert ran[-1] == "merge"
    assert sorted(ran[:3]) == ["part0", "part1", "part2"]
    assert await statuses(queue, merge) == [C]


async def test_a_job_blocked_on_an_unfinished_prerequisite_is_never_claimed(queue: Queue) -> None:
    ran: list[str] = []
    recording(queue, ran)
    waiting = await queue.add_job("step", {"name": "gate"}, run_at=None, delay=3600)
    blocked = await queue.add_job("step", {"name": "after"}, depends_on=[waiting])
    counts = await run_due_jobs(queue)
    assert not counts
    assert ran == []
    assert await statuses(queue, waiting, blocked) == [P, B]


async def test_depending_on_completed_jobs_is_pending_at_once(queue: Queue) -> None:
    ran: list[str] = []
    recording(queue, ran)
    done = await queue.add_job("step", {"name": "done"})
    await run_due_jobs(queue)
    after = await queue.add_job("step", {"name": "after"}, depends_on=[done])
    assert await statuses(queue, after) == [P]
    job = await queue.get_job(after)
    assert job is not None
    assert job.depends_on == [done]


async def test_failure_cancels_dependents_transitively_with_the_reason(queue: Queue) -> None:
    ran: list[str] = []
    recording(queue, ran, failing={"root"})
    root = await queue.add_job("step", {"name": "root"})
    child = await queue.add_job("step", {"name": "child"}, depends_on=[root])
    grandchild = await queue.add_job("step", {"name": "grandchild"}, depends_on=[child])
    unrelated = await queue.add_job("step", {"name": "unrelated"})
    await run_due_jobs(queue)
    assert sorted(ran) == ["root", "unrelated"]
    assert await statuses(queue, root, child, grandchild, unrelated) == [F, X, X, C]
    for job_id, cause in ((child, root), (grandchild, child)):
        job = await queue.get_job(job_id)
        assert job is not None
        assert job.failure_reason is FailureReason.DEPENDENCY_FAILED
        assert job.last_error is not None
        assert f"job {cause}" in job.last_error
        cancel = (await queue.get_job_events(job_id))[-1]
        assert cancel.type is EventType.CANCEL
        assert cancel.data["dependency"] == cause
        assert cancel.data["reason"] == "dependency_failed"


async def test_cancelling_a_prerequisite_cancels_its_dependents(queue: Queue) -> None:
    root = await queue.add_job("step", {"name": "root"})
    child = await queue.add_job("step", {"name": "child"}, depends_on=[root])
    leaf = await queue.add_job("step", {"name": "leaf"}, depends_on=[child])
    await queue.cancel_job(root)
    assert await statuses(queue, root, child, leaf) == [X, X, X]
    job = await queue.get_job(leaf)
    assert job is not None
    assert job.failure_reason is FailureReason.DEPENDENCY_FAILED


async def test_cancelling_a_blocked_job_cancels_only_it_and_its_dependents(queue: Queue) -> None:
    root = await queue.add_job("step", {"name": "root"})
    child = await queue.add_job("step", {"name": "child"}, depends_on=[root])
    leaf = await queue.add_job("step", {"name": "leaf"}, depends_on=[child])
    cancelled = await queue.cancel_job(child)
    assert cancelled.status is X
    assert cancelled.failure_reason is None  # cancelled by hand, not by a dependency
    assert await statuses(queue, root, child, leaf) == [P, X, X]


async def test_a_batch_can_reference_its_own_jobs_by_ref(queue: Queue) -> None:
    ran: list[str] = []
    recording(queue, ran)
    ids = await queue.add_jobs(
        [
            {"job_type": "step", "payload": {"name": "extract"}, "ref": "extract"},
            {"job_type": "step", "payload": {"name": "t1"}, "ref": "t1", "depends_on": ["extract"]},
            {"job_type": "step", "payload": {"name": "t2"}, "ref": "t2", "depends_on": ["extract"]},
            {"job_type": "step", "payload": {"name": "load"}, "depends_on": ["t1", "t2"]},
        ]
    )
    assert await statuses(queue, *ids) == [P, B, B, B]
    load = await queue.get_job(ids[3])
    assert load is not None
    assert load.depends_on == [ids[1], ids[2]]
    await run_due_jobs(queue)
    assert ran[0] == "extract"
    assert ran[-1] == "load"
    assert await statuses(queue, *ids) == [C, C, C, C]


async def test_a_batch_mixes_refs_and_existing_ids(queue: Queue) -> None:
    before = await queue.add_job("step", {"name": "before"})
    ids = await queue.add_jobs(
        [
            {"job_type": "step", "ref": "mine"},
            {"job_type": "step", "depends_on": ["mine", before]},
        ]
    )
    job = await queue.get_job(ids[1])
    assert job is not None
    assert job.depends_on == sorted([before, ids[0]])


async def test_cycles_and_forward_refs_are_refused_and_nothing_is_stored(queue: Queue) -> None:
    with pytest.raises(InvalidArgument, match="not the ref of an earlier job"):
        await queue.add_jobs(
            [
                {"job_type": "step", "ref": "a", "depends_on": ["b"]},
                {"job_type": "step", "ref": "b", "depends_on": ["a"]},
            ]
        )
    with pytest.raises(InvalidArgument, match="not the ref of an earlier job"):
        await queue.add_jobs([{"job_type": "step", "ref": "self", "depends_on": ["self"]}])
    assert (await queue.list_jobs()).items == []


async def test_unknown_and_failed_prerequisites_are_refused_and_nothing_is_stored(
    queue: Queue,
) -> None:
    ran: list[str] = []
    recording(queue, ran, failing={"bad"})
    bad = await queue.add_job("step", {"name": "bad"})
    await run_due_jobs(queue)
    with pytest.raises(DependencyInvalid, match="does not exist") as missing:
        await queue.add_jobs(
            [
                {"job_type": "step", "payload": {"name": "ok"}},
                {"job_type": "step", "depends_on": [999_999]},
            ]
        )
    assert missing.value.job_id == 999_999
    with pytest.raises(DependencyInvalid, match=f"job {bad}, which is failed") as failed:
        await queue.add_job("step", {"name": "after"}, depends_on=[bad])
    assert (failed.value.job_id, failed.value.status) == (bad, "failed")
    page = await queue.list_jobs()
    assert [job.id for job in page.items] == [bad]  # neither batch left a row


async def test_a_tag_drain_waits_for_the_unfinished_jobs_with_the_tag(queue: Queue) -> None:
    ran: list[str] = []
    recording(queue, ran)
    done = await queue.add_job("step", {"name": "early"}, tags=["import-7"])
    await run_due_jobs(queue)
    rows = [
        await queue.add_job("step", {"name": f"row{n}"}, tags=["import-7"], queue="rows")
        for n in range(3)
    ]
    other = await queue.add_job("step", {"name": "other"}, tags=["import-8"], queue="rows")
    report = await queue.add_job("step", {"name": "report"}, depends_on_tags=["import-7"])
    job = await queue.get_job(report)
    assert job is not None
    assert job.status is B
    assert job.depends_on == rows  # the finished job and other tags are not waited for
    assert done not in job.depends_on
    assert other not in job.depends_on
    await run_due_jobs(queue)
    assert ran[-1] == "report"


async def test_a_tag_drain_includes_earlier_jobs_of_the_same_batch(queue: Queue) -> None:
    ids = await queue.add_jobs(
        [
            {"job_type": "step", "tags": ["batch-1"]},
            {"job_type": "step", "tags": ["batch-1"]},
            {"job_type": "step", "depends_on_tags": ["batch-1"]},
            {"job_type": "step", "tags": ["batch-1"]},  # added after the drain: not waited for
        ]
    )
    job = await queue.get_job(ids[2])
    assert job is not None
    assert job.depends_on == ids[:2]
    assert job.status is B


async def test_a_drain_of_a_tag_nobody_carries_runs_at_once(queue: Queue) -> None:
    job_id = await queue.add_job("step", depends_on_tags=["nobody"])
    job = await queue.get_job(job_id)
    assert job is not None
    assert (job.status, job.depends_on) == (P, [])


async def test_retrying_a_chain_in_order_runs_it_again(queue: Queue) -> None:
    ran: list[str] = []
    failing = {"root"}
    recording(queue, ran, failing=failing)
    root = await queue.add_job("step", {"name": "root"})
    child = await queue.add_job("step", {"name": "child"}, depends_on=[root])
    await run_due_jobs(queue)
    assert await statuses(queue, root, child) == [F, X]

    with pytest.raises(DependencyInvalid, match=f"retry job {root} first"):
        await queue.retry_job(child)
    assert await statuses(queue, child) == [X]

    failing.clear()
    result = await queue.retry_jobs(status=["failed", "cancelled"])  # oldest first: root, child
    assert result.changed == 2
    assert await statuses(queue, root, child) == [P, B]
    await run_due_jobs(queue)
    assert ran == ["root", "root", "child"]
    assert await statuses(queue, root, child) == [C, C]


async def test_an_idempotent_duplicate_keeps_the_first_jobs_dependencies(queue: Queue) -> None:
    gate = await queue.add_job("step", {"name": "gate"})
    first = await queue.add_job("step", idempotency_key="k", depends_on=[gate])
    again = await queue.add_job("step", idempotency_key="k")
    assert (again, again.created) == (first, False)
    job = await queue.get_job(first)
    assert job is not None
    assert (job.status, job.depends_on) == (B, [gate])


async def test_a_ref_to_an_idempotent_duplicate_depends_on_the_existing_job(queue: Queue) -> None:
    existing = await queue.add_job("step", idempotency_key="shared")
    ids = await queue.add_jobs(
        [
            {"job_type": "step", "idempotency_key": "shared", "ref": "s"},
            {"job_type": "step", "depends_on": ["s"]},
        ]
    )
    assert ids[0] == existing
    job = await queue.get_job(ids[1])
    assert job is not None
    assert job.depends_on == [existing]
    assert job.status is B


async def test_blocked_jobs_are_listed_by_status_and_cancelled_in_bulk(queue: Queue) -> None:
    gate = await queue.add_job("step")
    blocked = [await queue.add_job("step", depends_on=[gate]) for _ in range(3)]
    page = await queue.list_jobs(status="blocked")
    assert [job.id for job in page.items] == list(reversed(blocked))
    result = await queue.cancel_jobs(status="blocked")
    assert result.changed == 3
    assert await statuses(queue, gate) == [P]
