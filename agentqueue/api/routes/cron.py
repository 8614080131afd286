"""`/api/v1/cron`: cron schedules — add, list, get, edit, pause, resume, remove."""

from __future__ import annotations

from fastapi import APIRouter, Response

from agentqueue.api.deps import Operator, QueueDep, Reader, audited
from agentqueue.errors import CronJobNotFound
from agentqueue.models import CronJob, CronStatus
from agentqueue.requests import CronCreate, CronEdit

router = APIRouter(prefix="/cron", tags=["cron"])


@router.post("", status_code=201, summary="Add (or replace) a schedule")
async def add_cron_job(body: CronCreate, queue: QueueDep, access: Operator) -> CronJob:
    """Store a schedule; the same name replaces its definition and keeps its history."""
    async with audited(queue, access, "add_cron_job", body.name):
        return await body.add_to(queue)


@router.get("", summary="List schedules")
async def list_cron_jobs(
    queue: QueueDep, access: Reader, status: CronStatus | None = None
) -> list[CronJob]:
    """Every schedule by name (only active or paused ones with `status`)."""
    return await queue.list_cron_jobs(status)


@router.get("/{name}", summary="Get a schedule")
async def get_cron_job(name: str, queue: QueueDep, access: Reader) -> CronJob:
    """One schedule, with its next and last tick."""
    cron = await queue.get_cron_job(name)
    if cron is None:
        raise CronJobNotFound(name)
    return cron


@router.patch("/{name}", summary="Edit a schedule")
async def edit_cron_job(name: str, body: CronEdit, queue: QueueDep, access: Operator) -> CronJob:
    """Change a schedule; fields left out stay as they are."""
    changes = body.changes()
    async with audited(queue, access, "edit_cron_job", name, fields=sorted(changes)):
        return await queue.edit_cron_job(name, **changes)


@router.post("/{name}/pause", summary="Pause a schedule")
async def pause_cron_job(name: str, queue: QueueDep, access: Operator) -> CronJob:
    """Stop firing until resumed."""
    async with audited(queue, access, "pause_cron_job", name):
        return await queue.pause_cron_job(name)


@router.post("/{name}/resume", summary="Resume a schedule")
async def resume_cron_job(name: str, queue: QueueDep, access: Operator) -> CronJob:
    """Fire again from the next tick after now."""
    async with audited(queue, access, "resume_cron_job", name):
        return await queue.resume_cron_job(name)


@router.delete("/{name}", status_code=204, summary="Remove a schedule")
async def remove_cron_job(name: str, queue: QueueDep, access: Operator) -> Response:
    """Delete a schedule; the jobs it enqueued stay."""
    async with audited(queue, access, "remove_cron_job", name):
        await queue.remove_cron_job(name)
    return Response(status_code=204)
