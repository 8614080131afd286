"""A new job as its store wrote it, known from what was written: no read back.

Every store writes a new job from its `InsertJob` and the time it was created at, the same way
(`new_job_times` is the one rule for the times it derives). A store that reports that time
(`InsertResult.at`) lets the core answer with the stored job at once; the REST and MCP adds
answer with it, and reading it back had cost more than the add on SQLite (a reader-thread
round trip). A test on every store checks it equals the job read back.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from agentqueue.backends.base import InsertJob, InsertResult
from agentqueue.models import Job
from agentqueue.states import JobStatus


def new_job_times(job: InsertJob, at: datetime) -> tuple[datetime, datetime | None]:
    """The `run_at` and `idempotency_expires_at` of a job created at `at`."""
    run_at = job.run_at or at
    if job.delay:
        run_at = run_at + timedelta(seconds=job.delay)
    expires = (
        at + timedelta(seconds=job.idempotency_window)
        if job.idempotency_window is not None and job.idempotency_key is not None
        else None
    )
    return run_at, expires


def new_job(job: InsertJob, result: InsertResult) -> Job | None:
    """The job `result` stored from `job`, or None when only a read can tell: it was not
    created by this call (an idempotency key's earlier job), the store did not say when, or it
    has prerequisites (it may start blocked)."""
    at = result.at
    if not result.created or at is None:
        return None
    if job.depends_on or job.depends_on_batch or job.depends_on_tags:
        return None
    run_at, expires = new_job_times(job, at)
    dead_letter = job.dead_letter
    return Job(
        id=result.id,
        queue=job.queue,
        job_type=job.job_type,
        # As stored: JSON text, so tuples come back as lists and keys as strings.
        payload=json.loads(json.dumps(job.payload)),
        status=JobStatus.PENDING,
        priority=job.priority,
        run_at=run_at,
        created_at=at,
        updated_at=at,
        attempts=0,
        max_attempts=job.max_attempts,
        tags=list(job.tags),
        idempotency_key=job.idempotency_key,
        timeout=job.timeout,
        retry_delay=job.retry_delay,
        retry_backoff=job.retry_backoff,
        retry_delay_max=job.retry_delay_max,
        force_kill_on_timeout=job.force_kill_on_timeout,
        group=job.group,
        dead_letter_job_type=dead_letter["job_type"] if dead_letter else None,
        idempotency_expires_at=expires,
        origin=job.origin,  # pyright: ignore[reportArgumentType]  (validated from its JSON data)
    )
