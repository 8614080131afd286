"""`/api/v1`: job types, stats, workers, flow limits, the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from agentqueue.api.deps import Admin, Operator, QueueDep, Reader, ThroughputDep, audited
from agentqueue.api.errors import HttpError
from agentqueue.models import (
    MAX_JOB_ID,
    AuditRecord,
    JobTypeInfo,
    Limit,
    LimitScope,
    QueueStats,
    Throughput,
    WorkerInfo,
)
from agentqueue.requests import LimitChange
from agentqueue.throughput import MAX_BUCKETS

router = APIRouter()


@router.get("/job-types", tags=["job types"], summary="List job types")
async def list_job_types(queue: QueueDep, access: Reader) -> list[JobTypeInfo]:
    """Every job type the store knows (published by workers), with its payload JSON Schema."""
    return await queue.list_job_types()


@router.get("/job-types/{name}", tags=["job types"], summary="Describe a job type")
async def describe_job_type(name: str, queue: QueueDep, access: Reader) -> JobTypeInfo:
    """One job type: description, payload JSON Schema, examples, default options."""
    for info in await queue.list_job_types():
        if info.name == name:
            return info
    raise HttpError(
        "not_found", f"no job type {name!r} is known (GET /api/v1/job-types lists them)"
    )


@router.post("/job-types/{name}/pause", tags=["limits"], summary="Pause a job type")
async def pause_job_type(name: str, queue: QueueDep, access: Operator) -> Limit:
    """Start no job of the type until it is resumed (running ones finish)."""
    async with audited(queue, access, "pause_job_type", name):
        return await queue.pause_job_type(name)


@router.post("/job-types/{name}/resume", tags=["limits"], summary="Resume a job type")
async def resume_job_type(name: str, queue: QueueDep, access: Operator) -> Limit | None:
    """Let the type's jobs start again (null when the type has no other limit)."""
    async with audited(queue, access, "resume_job_type", name):
        return await queue.resume_job_type(name)


@router.get("/stats", tags=["stats"], summary="Jobs per type and status")
async def stats(queue: QueueDep, access: Reader) -> QueueStats:
    """How many jobs are in each status, per job type and in all."""
    return await queue.stats()


@router.get("/stats/throughput", tags=["stats"], summary="Finished jobs per minute")
async def throughput(
    reader: ThroughputDep,
    access: Reader,
    minutes: Annotated[int, Query(ge=1, le=MAX_BUCKETS, description="Minutes back from now.")] = 60,
) -> Throughput:
    """Jobs completed, failed and cancelled per minute over the last `minutes` (oldest first,
    every minute present, the last one still filling), with each minute's failure rate:
    what the dashboard's charts draw. Counted by the jobs' completion time."""
    return await reader.read(minutes)


@router.get("/workers", tags=["stats"], summary="Live workers")
async def workers(
    queue: QueueDep, access: Reader, alive: Annotated[bool, Query()] = True
) -> list[WorkerInfo]:
    """The worker processes that beat recently (all known ones with `alive=false`)."""
    return await queue.list_workers(alive=alive)


@router.get("/limits", tags=["limits"], summary="List flow limits")
async def list_limits(queue: QueueDep, access: Reader) -> list[Limit]:
    """Every concurrency and rate limit, and paused job types."""
    return await queue.list_limits()


@router.patch("/limits/{scope}/{key}", tags=["limits"], summary="Change a limit")
async def set_limit(
    scope: LimitScope, key: str, body: LimitChange, queue: QueueDep, access: Operator
) -> Limit | None:
    """Change the given fields of a job type's or group's limit (`*`: each group); null
    removes that limit. Answers null when nothing is limited any more."""
    target = {"job_type": key} if scope is LimitScope.JOB_TYPE else {"group": key}
    async with audited(queue, access, "set_limit", f"{scope.value}:{key}", **body.changes()):
        return await queue.set_limit(**target, **body.changes())


@router.delete("/limits/{scope}/{key}", tags=["limits"], status_code=204, summary="Remove")
async def remove_limit(scope: LimitScope, key: str, queue: QueueDep, access: Operator) -> Response:
    """Remove every limit of a job type or group (a pause too)."""
    target = {"job_type": key} if scope is LimitScope.JOB_TYPE else {"group": key}
    async with audited(queue, access, "remove_limit", f"{scope.value}:{key}"):
        if not await queue.remove_limit(**target):
            raise HttpError("not_found", f"{scope.value} {key!r} has no limit")
    return Response(status_code=204)


@router.get("/audit", tags=["audit"], summary="The audit log")
async def audit_log(
    queue: QueueDep,
    access: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_JOB_ID)] = None,
) -> list[AuditRecord]:
    """Mutating calls through REST and MCP, newest first (admin scope)."""
    return await queue.list_audit(limit=limit, before_id=before_id)
