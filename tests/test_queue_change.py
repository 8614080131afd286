"""Operator changes: cancel_job, retry_job, edit_job — allowed states, effects, one event each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from agentqueue import (
    ErrorRecord,
    EventType,
    FailureReason,
    InvalidArgument,
    InvalidTransition,
    Job,
    JobNotFound,
    PayloadInvalid,
    Queue,
)
from agentqueue.backends.base import Lease, Outcome, OutcomeKind
from agentqueue.states import JobStatus


async def claimed(queue: Queue, job_type: str = "work", payload: object = None) -> Job:
    """Add one job of a fresh type and claim it as worker `w1` (processing, attempt 1)."""
    job_id = await queue.add_job(job_type, payload)
    jobs = await queue.backend.claim(
        worker_id="w1", queue=None, job_types=[job_type], limit=1, lease_seconds=60
    )
    assert [job.id for job in jobs] == [job_id]
    return jobs[0]


async def finished(queue: Queue, kind: OutcomeKind, job_type: str = "work") -> Job:
    """Drive a new job through claim to `kind` (COMPLETE, FAIL or CANCEL)."""
    job = await claimed(queue, job_type)
    error = None
    if kind is OutcomeKind.FAIL:
        error = ErrorRecord(
            attempt=1, at=datetime.now(UTC), reason=FailureReason.HANDLER_ERROR, message="boom"
        )
    lease = Lease(job.id, job.attempts)
    lost = await queue.backend.finish(
        worker_id="w1", outcomes=[Outcome(kind, lease, output={"ok": 1}, error=error)]
    )
    assert lost == set()
    done = await queue.get_job(job.id)
    assert done is not None
    return done


async def event_types(queue: Queue, job_id: int) -> list[str]:
    return [event.type.value for event in await queue.get_job_events(job_id)]


# -- cancel -----------------------------------------------------------------------------------
async def test_cancelling_a_pending_job_cancels_it_with_one_cancel_event(queue: Queue) -> None:
    job_id = await queue.add_job("work")
    job = await queue.cancel_job(job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.completed_at is not None
    assert await queue.get_job(job_id) == job
    events = await queue.get_job_events(job_id)
    assert [e.type for e in events] == [EventType.ADDED, EventType.CANCEL]
    assert events[-1].status is JobStatus.CANCELLED
    assert events[-1].data["from"] == "pending"


async def test_a_cancelled_job_is_never_claimed(queue: Queue) -> None:
    job_id = await queue.add_job("work")
    await queue.cancel_job(job_id)
    jobs = await queue.backend.claim(
        worker_id="w1", queue=None, job_types=None, limit=10, lease_seconds=60
    )
    assert jobs == []


async def test_cancelling_a_processing_job_requests_a_stop_and_leaves_it_processing(
    queue: Queue,
) -> None:
    job = await claimed(queue)
    after = await queue.cancel_job(job.id)
    assert after.status is JobStatus.PROCESSING
    assert after.cancel_requested is True
    assert after.locked_by == "w1"
    events = await queue.get_job_events(job.id)
    assert [e.type for e in events] == [
        EventType.ADDED,
        EventType.CLAIM,
        EventType.CANCEL_REQUESTED,
    ]
    assert events[-1].status is JobStatus.PROCESSING
    beat = await queue.backend.heartbeat(
        worker_id="w1", leases=[Lease(job.id, 1)], lease_seconds=60
    )
    assert beat.cancel_requested == {job.id}
    assert beat.lost == set()


async def test_cancelling_a_processing_job_twice_writes_one_request_event(queue: Queue) -> None:
    job = await claimed(queue)
    await queue.cancel_job(job.id)
    again = await queue.cancel_job(job.id)
    assert again.cancel_requested is True
    assert (await event_types(queue, job.id)).count("cancel_requested") == 1


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (OutcomeKind.COMPLETE, "completed"),
        (OutcomeKind.FAIL, "failed"),
        (OutcomeKind.CANCEL, "cancelled"),
    ],
)
async def test_cancelling_a_finished_job_is_refused_naming_its_status(
    queue: Queue, kind: OutcomeKind, status: str
) -> None:
    job = await finished(queue, kind)
    assert job.status.value == status
    before = await event_types(queue, job.id)
    with pytest.raises(InvalidTransition, match=f"it is {status}") as caught:
        await queue.cancel_job(job.id)
    assert caught.value.code == "invalid_transition"
    assert await queue.get_job(job.id) == job
    assert await event_types(queue, job.id) == before


@pytest.mark.parametrize("action", ["cancel_job", "retry_job"])
async def test_changing_an_unknown_job_raises_job_not_found(queue: Queue, action: str) -> None:
    with pytest.raises(JobNotFound, match="777"):
        await getattr(queue, action)(777)


async def test_editing_an_unknown_job_raises_job_not_found(queue: Queue) -> None:
    with pytest.raises(JobNotFound):
        await queue.edit_job(777, priority=1)
    with pytest.raises(JobNotFound):
        await queue.edit_job(777, payload={"a": 1})


# -- retry ------------------------------------------------------------------------------------
async def test_retrying_a_failed_job_makes_it_pending_with_fresh_attempts(queue: Queue) -> None:
    failed = await finished(queue, OutcomeKind.FAIL)
    assert failed.attempts == 1
    assert len(failed.error_history) == 1
    job = await queue.retry_job(failed.id)
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0
    assert job.error_history == failed.error_history
    assert job.error_history[0].message == "boom"
    assert job.completed_at is None
    assert job.locked_by is None
    events = await queue.get_job_events(job.id)
    assert events[-1].type is EventType.RETRY
    assert events[-1].data["from"] == "failed"
    assert (await event_types(queue, job.id)).count("retry") == 1
    again = await queue.backend.claim(
        worker_id="w2", queue=None, job_types=None, limit=1, lease_seconds=60
    )
    assert [(j.id, j.attempts) for j in again] == [(job.id, 1)]


async def test_retrying_a_cancelled_job_makes_it_pending(queue: Queue) -> None:
    job_id = await queue.add_job("work")
    await queue.cancel_job(job_id)
    job = await queue.retry_job(job_id)
    assert (job.status, job.attempts, job.cancel_requested) == (JobStatus.PENDING, 0, False)
    assert await event_types(queue, job_id) == ["added", "cancel", "retry"]


async def test_retrying_a_pending_job_is_refused(queue: Queue) -> None:
    job_id = await queue.add_job("work")
    with pytest.raises(InvalidTransition, match="it is pending"):
        await queue.retry_job(job_id)
    assert await event_types(queue, job_id) == ["added"]


@pytest.mark.parametrize("kind", [None, OutcomeKind.COMPLETE])
async def test_retrying_a_processing_or_completed_job_is_refused(
    queue: Queue, kind: OutcomeKind | None
) -> None:
    job = await claimed(queue) if kind is None else await finished(queue, kind)
    with pytest.raises(InvalidTransition, match=f"it is {job.status.value}") as caught:
        await queue.retry_job(job.id)
    assert caught.value.details["allowed"] == ["cancelled", "failed"]
    assert await queue.get_job(job.id) == job


# -- edit -------------------------------------------------------------------------------------
class Thumb(BaseModel):
    url: str
    size: int = 128


async def test_editing_a_pending_job_changes_the_fields_with_one_edit_event(
    queue: Queue,
) -> None:
    job_id = await queue.add_job("work", {"a": 1}, priority=1, max_attempts=3)
    when = datetime(2031, 5, 1, tzinfo=UTC)
    job = await queue.edit_job(
        job_id, payload={"a": 2}, priority=9, run_at=when, max_attempts=5, queue="other"
    )
    assert (job.payload, job.priority, job.run_at) == ({"a": 2}, 9, when)
    assert (job.max_attempts, job.queue, job.status) == (5, "other", JobStatus.PENDING)
    assert await queue.get_job(job_id) == job
    events = await queue.get_job_events(job_id)
    assert [e.type for e in events] == [EventType.ADDED, EventType.EDIT]
    assert events[-1].data["fields"] == ["max_attempts", "payload", "priority", "queue", "run_at"]


async def test_an_edited_payload_is_validated_against_the_handlers_model(queue: Queue) -> None:
    @queue.handler("thumb")
    async def thumb(payload: Thumb) -> None:
        return None

    job_id = await queue.add_job("thumb", {"url": "a.png"})
    with pytest.raises(PayloadInvalid) as caught:
        await queue.edit_job(job_id, payload={"url": "a.png", "size": "huge"})
    assert [e["loc"] for e in caught.value.errors] == ["size"]
    job = await queue.get_job(job_id)
    assert job is not None
    assert job.payload == {"url": "a.png"}
    assert await event_types(queue, job_id) == ["added"]
    edited = await queue.edit_job(job_id, payload=Thumb(url="b.png", size=64))
    assert edited.payload == {"url": "b.png", "size": 64}


async def test_edited_tags_replace_the_old_ones_in_tag_filters(queue: Queue) -> None:
    job_id = await queue.add_job("work", tags=["old", "keep"])
    job = await queue.edit_job(job_id, tags=["keep", "new", "new"])
    assert job.tags == ["keep", "new"]
    old = await queue.list_jobs(tags=["old"])
    new = await queue.list_jobs(tags=["new", "keep"], tag_mode="exact")
    assert old.items == []
    assert [j.id for j in new.items] == [job_id]
    cleared = await queue.edit_job(job_id, tags=[])
    assert cleared.tags == []
    assert (await queue.list_jobs(tags=["keep"])).items == []
    assert [j.id for j in (await queue.list_jobs(tags=[], tag_mode="exact")).items] == [job_id]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"colour": "red"}, "colour"),
        ({"status": "completed"}, "status"),
        ({"priority": 2_000_000}, "priority"),
        ({"run_at": datetime(2031, 1, 1)}, "run_at"),
        ({"tags": [""]}, "tag"),
        ({}, "at least one field"),
    ],
)
async def test_a_malformed_edit_is_rejected_and_changes_nothing(
    queue: Queue, changes: dict[str, object], match: str
) -> None:
    job_id = await queue.add_job("work", priority=1)
    with pytest.raises(InvalidArgument, match=match):
        await queue.edit_job(job_id, **changes)
    job = await queue.get_job(job_id)
    assert job is not None
    assert job.priority == 1
    assert await event_types(queue, job_id) == ["added"]


async def test_editing_a_processing_job_is_refused(queue: Queue) -> None:
    job = await claimed(queue)
    with pytest.raises(InvalidTransition, match="it is processing"):
        await queue.edit_job(job.id, priority=5)
    with pytest.raises(InvalidTransition, match="it is processing"):
        await queue.edit_job(job.id, payload={"x": 1})
    assert await queue.get_job(job.id) == job


async def test_editing_a_cancelled_job_is_refused(queue: Queue) -> None:
    job_id = await queue.add_job("work")
    await queue.cancel_job(job_id)
    with pytest.raises(InvalidTransition, match="it is cancelled"):
        await queue.edit_job(job_id, priority=5)


async def test_moving_run_at_into_the_future_keeps_a_job_from_being_claimed(
    queue: Queue,
) -> None:
    job_id = await queue.add_job("work")
    await queue.edit_job(job_id, run_at=datetime.now(UTC) + timedelta(hours=1))
    jobs = await queue.backend.claim(
        worker_id="w1", queue=None, job_types=None, limit=1, lease_seconds=60
    )
    assert jobs == []


@pytest.mark.parametrize(
    "field", ["priority", "run_at", "tags", "max_attempts", "retry_delay", "retry_backoff", "queue"]
)
async def test_setting_a_required_field_to_null_is_rejected(queue: Queue, field: str) -> None:
    job_id = await queue.add_job("work")
    with pytest.raises(InvalidArgument, match=f"{field} cannot be null"):
        await queue.edit_job(job_id, **{field: None})
    assert await event_types(queue, job_id) == ["added"]


async def test_setting_timeout_or_retry_cap_to_null_removes_the_limit(queue: Queue) -> None:
    job_id = await queue.add_job("work", timeout=5, retry_delay_max=60)
    job = await queue.edit_job(job_id, timeout=None, retry_delay_max=None)
    assert (job.timeout, job.retry_delay_max) == (None, None)
