"""Enqueue on the SQL stores: one transaction per batch, idempotency keys honoured."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.base import InsertJob, InsertResult
from agentqueue.backends.sql.rows import event_row, insert_events
from agentqueue.backends.sql.tables import job_tags, jobs
from agentqueue.models import EventType
from agentqueue.states import JobStatus


def insert(conn: sa.Connection, new_jobs: Sequence[InsertJob], at: datetime) -> list[InsertResult]:
    """Insert jobs (inside the caller's write transaction); see `Backend.insert_jobs`.

    Keys are checked and inserted in one write transaction; the unique index on
    (job_type, idempotency_key) backs this up against any other writer.
    """
    existing = _existing_keys(conn, new_jobs)
    results: list[InsertResult] = []
    fresh: list[InsertJob] = []
    first_of: dict[tuple[str, str], int] = {}  # key -> index in `fresh`
    slots: list[tuple[int, int]] = []  # (index in results, index in fresh)
    for job in new_jobs:
        key = (job.job_type, job.idempotency_key or "")
        if job.idempotency_key is not None and key in existing:
            results.append(InsertResult(existing[key], created=False))
        elif job.idempotency_key is not None and key in first_of:
            slots.append((len(results), first_of[key]))
            results.append(InsertResult(0, created=False))
        else:
            if job.idempotency_key is not None:
                first_of[key] = len(fresh)
            slots.append((len(results), len(fresh)))
            results.append(InsertResult(0, created=True))
            fresh.append(job)
    if not fresh:
        return results
    rows = [job_values(job, at) for job in fresh]
    inserted = conn.execute(jobs.insert().returning(jobs.c.id, sort_by_parameter_order=True), rows)
    ids = [row.id for row in inserted]
    for slot, fresh_index in slots:
        results[slot] = InsertResult(ids[fresh_index], results[slot].created)
    tag_rows = [
        {"job_id": job_id, "tag": tag}
        for job, job_id in zip(fresh, ids, strict=True)
        for tag in job.tags
    ]
    if tag_rows:
        conn.execute(job_tags.insert(), tag_rows)
    insert_events(
        conn,
        [
            event_row({"id": job_id, **row}, EventType.ADDED, JobStatus.PENDING, at)
            for row, job_id in zip(rows, ids, strict=True)
        ],
    )
    return results


def _existing_keys(
    conn: sa.Connection, new_jobs: Sequence[InsertJob]
) -> dict[tuple[str, str], int]:
    keys = {(j.job_type, j.idempotency_key) for j in new_jobs if j.idempotency_key is not None}
    if not keys:
        return {}
    query = sa.select(jobs.c.id, jobs.c.job_type, jobs.c.idempotency_key).where(
        sa.tuple_(jobs.c.job_type, jobs.c.idempotency_key).in_(list(keys))
    )
    return {(row.job_type, row.idempotency_key): row.id for row in conn.execute(query)}


def job_values(job: InsertJob, at: datetime) -> dict[str, Any]:
    """Return the `aq_jobs` column values of a new job created at `at`."""
    run_at = (job.run_at or at) + timedelta(seconds=job.delay)
    return {
        "queue": job.queue,
        "job_type": job.job_type,
        "payload": job.payload,
        "status": JobStatus.PENDING.value,
        "priority": job.priority,
        "run_at": run_at,
        "created_at": at,
        "updated_at": at,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "error_history": [],
        "tags": job.tags,
        "idempotency_key": job.idempotency_key,
        "timeout": job.timeout,
        "retry_delay": job.retry_delay,
        "retry_backoff": job.retry_backoff,
        "retry_delay_max": job.retry_delay_max,
        "progress": 0,
        "cancel_requested": False,
        # Every column, defaults too: PostgreSQL's one-statement insert (pg_statements.INSERT)
        # writes NULL for a missing key.
        "force_kill_on_timeout": job.force_kill_on_timeout,
        "waiting_for": None,
    }
