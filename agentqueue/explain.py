"""`explain_job`: why a job is not running, or why it ended the way it did, as reasons an agent
(or a person) can act on — each with a stable `code`, a sentence, and the facts behind it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agentqueue.models import ANY_GROUP, FailureReason, Job, Limit, LimitScope, WorkerInfo
from agentqueue.states import JobStatus

if TYPE_CHECKING:
    from agentqueue.queue import Queue


def _t(when: datetime | None) -> str:
    """A time as messages show it: ISO 8601 to the second, in UTC."""
    return when.astimezone(UTC).isoformat(timespec="seconds") if when is not None else "?"


class Reason(BaseModel):
    """One reason: a stable code, what it means here, and its facts."""

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict[str, Any])


class Explanation(BaseModel):
    """Why job `job_id` is where it is."""

    job_id: int
    status: JobStatus
    summary: str
    """The first reason's message (the one to act on first)."""
    reasons: list[Reason]


async def explain(queue: Queue, job: Job) -> Explanation:
    """Collect the reasons for `job`'s state."""
    now = queue.clock.now()
    reasons = await _reasons(queue, job, now)
    return Explanation(
        job_id=job.id, status=job.status, summary=reasons[0].message, reasons=reasons
    )


async def _reasons(queue: Queue, job: Job, now: datetime) -> list[Reason]:
    status = job.status
    if status is JobStatus.COMPLETED:
        return [Reason(code="completed", message=f"completed at {_t(job.completed_at)}")]
    if status is JobStatus.FAILED:
        return [_failure(job)]
    if status is JobStatus.CANCELLED:
        return [_cancellation(job)]
    if status is JobStatus.PROCESSING:
        return [_running(job, now)]
    if status is JobStatus.WAITING:
        return [await _waiting(queue, job)]
    if status is JobStatus.BLOCKED:
        return [await _blocked(queue, job)]
    return await _pending(queue, job, now)


def _failure(job: Job) -> Reason:
    last = job.error_history[-1] if job.error_history else None
    details: dict[str, Any] = {
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": job.last_error,
        "failure_reason": job.failure_reason.value if job.failure_reason else None,
    }
    if last is not None and last.traceback:
        details["traceback"] = last.traceback
    reason = job.failure_reason
    if reason is FailureReason.NO_HANDLER or reason is FailureReason.PAYLOAD_INVALID:
        message = f"failed without retrying ({reason.value}): {job.last_error}"
        return Reason(code="not_retryable", message=message, details=details)
    if job.failure_reason is FailureReason.LEASE_EXPIRED:
        message = f"its worker stopped on the last attempt ({job.last_error})"
        return Reason(code="lease_expired", message=message, details=details)
    message = (
        f"attempts exhausted ({job.attempts}/{job.max_attempts}); last error: {job.last_error}"
    )
    return Reason(code="attempts_exhausted", message=message, details=details)


def _cancellation(job: Job) -> Reason:
    if job.failure_reason is FailureReason.DEPENDENCY_FAILED:
        return Reason(
            code="dependency_failed",
            message=job.last_error or "a job it depends on failed or was cancelled",
            details={"depends_on": job.depends_on},
        )
    return Reason(code="cancelled", message=f"cancelled at {_t(job.completed_at)}")


def _running(job: Job, now: datetime) -> Reason:
    details = {"worker": job.locked_by, "lease_expires_at": job.lease_expires_at}
    if job.lease_expires_at is not None and job.lease_expires_at < now:
        return Reason(
            code="lease_expired",
            message=f"its lease on worker {job.locked_by} expired; the supervisor will take it "
            "back (is a worker or `agentqueue supervisor` running?)",
            details=details,
        )
    message = f"running on {job.locked_by} (attempt {job.attempts}/{job.max_attempts})"
    if job.cancel_requested:
        message += "; a cancel was requested"
    return Reason(code="running", message=message, details=details | {"progress": job.progress})


async def _waiting(queue: Queue, job: Job) -> Reason:
    if job.waiting_for is None:
        return Reason(
            code="sleeping",
            message=f"in a durable sleep until {_t(job.run_at)}",
            details={"until": job.run_at},
        )
    token = await queue.get_token(job.waiting_for)
    return Reason(
        code="waiting_on_token",
        message=f"waiting since {_t(job.updated_at)} for token {job.waiting_for} to be completed "
        "(complete_token)",
        details={
            "token_id": job.waiting_for,
            "since": job.updated_at,
            "expires_at": token.expires_at if token is not None else None,
        },
    )


async def _blocked(queue: Queue, job: Job) -> Reason:
    unmet = []
    for prerequisite in job.depends_on:
        other = await queue.get_job(prerequisite)
        if other is not None and other.status is not JobStatus.COMPLETED:
            unmet.append({"job_id": other.id, "status": other.status.value})
    names = ", ".join(f"{u['job_id']} ({u['status']})" for u in unmet) or "none left"
    return Reason(
        code="unmet_dependency",
        message=f"blocked until these jobs complete: {names}",
        details={"unmet": unmet},
    )


async def _pending(queue: Queue, job: Job, now: datetime) -> list[Reason]:
    reasons: list[Reason] = []
    if job.run_at > now:
        reasons.append(
            Reason(
                code="scheduled",
                message=f"not due before {_t(job.run_at)}"
                + (f" (retry after attempt {job.attempts})" if job.attempts else ""),
                details={"run_at": job.run_at},
            )
        )
    limits = await queue.list_limits()
    reasons += await _limit_reasons(queue, job, limits)
    workers = await queue.list_workers()
    serving = [w for w in workers if _serves(w, job)]
    if not serving:
        reasons.append(
            Reason(
                code="no_live_worker",
                message=f"no live worker serves job type {job.job_type!r} on queue "
                f"{job.queue!r} (start `agentqueue worker --app ...` with a handler for it)",
                details={"live_workers": len(workers)},
            )
        )
    if not reasons:
        reasons.append(
            Reason(
                code="queued",
                message=f"due and waiting for a free slot on {len(serving)} live worker(s)",
                details={"workers": [w.id for w in serving]},
            )
        )
    return reasons


async def _limit_reasons(queue: Queue, job: Job, limits: list[Limit]) -> list[Reason]:
    reasons: list[Reason] = []
    by_key = {(lim.scope, lim.key): lim for lim in limits}
    typed = by_key.get((LimitScope.JOB_TYPE, job.job_type))
    if typed is not None and typed.paused:
        reasons.append(
            Reason(
                code="job_type_paused",
                message=f"job type {job.job_type!r} is paused (resume_job_type)",
            )
        )
    grouped = None
    if job.group is not None:
        grouped = by_key.get((LimitScope.GROUP, job.group)) or by_key.get(
            (LimitScope.GROUP, ANY_GROUP)
        )
    for limit, job_type in ((typed, job.job_type), (grouped, None)):
        if limit is None or limit.max_concurrent is None:
            continue
        running = await queue.list_jobs(status=JobStatus.PROCESSING, job_type=job_type, limit=1000)
        count = sum(
            1 for j in running.items if limit.scope is LimitScope.JOB_TYPE or j.group == job.group
        )
        if count >= limit.max_concurrent:
            what = (
                f"job type {job.job_type!r}"
                if limit.scope is LimitScope.JOB_TYPE
                else (f"group {job.group!r}")
            )
            reasons.append(
                Reason(
                    code="limit_reached",
                    message=f"{what} has {count} of {limit.max_concurrent} jobs running",
                    details={"scope": limit.scope.value, "key": limit.key, "running": count},
                )
            )
    return reasons


def _serves(worker: WorkerInfo, job: Job) -> bool:
    return (not worker.queues or job.queue in worker.queues) and (
        not worker.job_types or job.job_type in worker.job_types
    )
