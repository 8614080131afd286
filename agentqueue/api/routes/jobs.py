"""`/api/v1/jobs`: add (one or many), read, list, edit, cancel, retry, events, steps, bulk."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from agentqueue.api.deps import Admin, Operator, QueueDep, Reader, audited
from agentqueue.api.security import Access
from agentqueue.audit import added_many, added_one
from agentqueue.errors import JobNotFound
from agentqueue.explain import Explanation
from agentqueue.models import (
    BulkResult,
    Job,
    JobEdit,
    JobEvent,
    JobStatus,
    NewJob,
    Origin,
    Page,
    TagMode,
)
from agentqueue.queue import Queue
from agentqueue.requests import AddedJob, AddJobs, BulkEdit, BulkFilter

router = APIRouter(prefix="/jobs", tags=["jobs"])

Ids = Annotated[list[str] | None, Query()]


async def _job(queue: Queue, job_id: int) -> Job:
    job = await queue.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


@router.post(
    "",
    status_code=201,
    summary="Add a job",
    responses={200: {"model": AddedJob, "description": "An idempotency key found the job"}},
)
async def add_job(job: NewJob, queue: QueueDep, access: Operator, response: Response) -> AddedJob:
    """Enqueue one job (add_job's fields as the body). 201 when created; 200 when its
    idempotency key returned an existing job."""
    origin = Origin(door="rest", actor=access.actor)
    async with audited(queue, access, "add_job", job.job_type) as note:
        ((job_id, stored),) = await queue.add_jobs_returning(
            [job], origin=origin, audit=note.adding(added_one)
        )
    if not job_id.created:
        response.status_code = 200
    return AddedJob(id=job_id, created=job_id.created, job=stored)


@router.post("/batch", status_code=201, summary="Add many jobs atomically")
async def add_jobs(body: AddJobs, queue: QueueDep, access: Operator) -> list[AddedJob]:
    """Enqueue several jobs in one transaction: all or none. Later jobs may list earlier ones'
    `ref` in `depends_on`."""
    origin = Origin(door="rest", actor=access.actor)
    async with audited(queue, access, "add_jobs", f"{len(body.jobs)} jobs") as note:
        added = await queue.add_jobs_returning(
            body.jobs, origin=origin, audit=note.adding(added_many)
        )
    return [AddedJob(id=i, created=i.created, job=stored) for i, stored in added]


@router.get("", summary="List jobs")
async def list_jobs(
    queue: QueueDep,
    access: Reader,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    job_type: Ids = None,
    queue_name: Annotated[list[str] | None, Query(alias="queue")] = None,
    tag: Annotated[list[str] | None, Query()] = None,
    tag_mode: TagMode = TagMode.ANY,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    run_at_after: datetime | None = None,
    run_at_before: datetime | None = None,
    created_by: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    mine: Annotated[bool, Query(description="only jobs the caller's key added")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]+$", max_length=20)] = None,
    order: Annotated[str, Query(pattern="^(newest|oldest)$")] = "newest",
) -> Page[Job]:
    """One page of jobs matching every filter given (repeat a parameter for several values);
    follow `next_cursor`."""
    return await queue.list_jobs(
        status=status,
        job_type=job_type,
        queue=queue_name,
        tags=tag,
        tag_mode=tag_mode,
        created_after=created_after,
        created_before=created_before,
        run_at_after=run_at_after,
        run_at_before=run_at_before,
        created_by=access.actor if mine else created_by,
        limit=limit,
        cursor=cursor,
        order=order,
    )


@router.get("/{job_id:int}", summary="Get a job")
async def get_job(job_id: int, queue: QueueDep, access: Reader) -> Job:
    """One job, everything known about it."""
    return await _job(queue, job_id)


@router.patch("/{job_id:int}", summary="Edit a pending job")
async def edit_job(job_id: int, edit: JobEdit, queue: QueueDep, access: Operator) -> Job:
    """Change fields of a pending job; fields left out stay as they are."""
    changes = {name: getattr(edit, name) for name in edit.model_fields_set}
    async with audited(queue, access, "edit_job", job_id, fields=sorted(changes)):
        return await queue.edit_job(job_id, **changes)


@router.post("/{job_id:int}/cancel", summary="Cancel a job")
async def cancel_job(job_id: int, queue: QueueDep, access: Operator) -> Job:
    """Cancel a blocked, pending or waiting job at once; ask a running one to stop."""
    async with audited(queue, access, "cancel_job", job_id):
        return await queue.cancel_job(job_id)


@router.post("/{job_id:int}/retry", summary="Retry a failed or cancelled job")
async def retry_job(job_id: int, queue: QueueDep, access: Operator) -> Job:
    """Run a failed or cancelled job again with fresh attempts."""
    async with audited(queue, access, "retry_job", job_id):
        return await queue.retry_job(job_id)


@router.get("/{job_id:int}/explain", summary="Why a job is where it is")
async def explain_job(job_id: int, queue: QueueDep, access: Reader) -> Explanation:
    """Structured reasons: a future run_at, unmet dependencies, a paused type or a full limit,
    a token it waits on, no live worker for its type, an expired lease, the last error."""
    return await queue.explain_job(job_id)


@router.get("/{job_id:int}/events", summary="A job's history")
async def job_events(job_id: int, queue: QueueDep, access: Reader) -> list[JobEvent]:
    """Every event of a job, oldest first."""
    return await queue.get_job_events(job_id)


@router.get("/{job_id:int}/steps", summary="A job's memoized steps")
async def job_steps(job_id: int, queue: QueueDep, access: Reader) -> dict[str, Any]:
    """The results of the job's `ctx.step()` calls by name."""
    await _job(queue, job_id)
    return await queue.get_steps(job_id)


def _filters(body: BulkFilter) -> dict[str, Any]:
    return {name: getattr(body, name) for name in body.model_fields_set - {"dry_run", "changes"}}


async def _bulk(
    queue: Queue,
    access: Access,
    action: str,
    body: BulkFilter,
    run: Callable[..., Awaitable[BulkResult]],
    *args: Any,
) -> BulkResult:
    """Run one bulk operation on the body's filter, audited (a dry run as `<action>:dry_run`)."""
    name = action + (":dry_run" if body.dry_run else "")
    filters = _filters(body)
    async with audited(queue, access, name, None, filter=filters) as note:
        result = await run(*args, dry_run=body.dry_run, **filters)
        note["changed"] = result.changed
    return result


@router.post("/bulk/cancel", summary="Cancel every matching job")
async def cancel_jobs(body: BulkFilter, queue: QueueDep, access: Operator) -> BulkResult:
    """Cancel the active jobs the filter matches (`dry_run`: count and sample only)."""
    return await _bulk(queue, access, "cancel_jobs", body, queue.cancel_jobs)


@router.post("/bulk/retry", summary="Retry every matching job")
async def retry_jobs(body: BulkFilter, queue: QueueDep, access: Operator) -> BulkResult:
    """Redrive the failed or cancelled jobs the filter matches, keeping their configuration."""
    return await _bulk(queue, access, "retry_jobs", body, queue.retry_jobs)


@router.post("/bulk/edit", summary="Edit every matching pending job")
async def edit_jobs(body: BulkEdit, queue: QueueDep, access: Operator) -> BulkResult:
    """Change the given fields of the pending jobs the filter matches."""
    changes = {name: getattr(body.changes, name) for name in body.changes.model_fields_set}
    return await _bulk(queue, access, "edit_pending_jobs", body, queue.edit_pending_jobs, changes)


@router.post("/bulk/purge", summary="Delete every matching finished job")
async def purge_jobs(body: BulkFilter, queue: QueueDep, access: Admin) -> BulkResult:
    """Delete the completed, failed and cancelled jobs the filter matches, with their history
    (admin scope)."""
    return await _bulk(queue, access, "purge_jobs", body, queue.purge_jobs)
