"""Operator-side changes and queries of the SQL stores: list, cancel, retry, edit, stats."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.sql import flow
from agentqueue.backends.sql.rows import JOB_COLUMNS, event_row, insert_events, job_from_row
from agentqueue.backends.sql.tables import job_tags, jobs
from agentqueue.errors import InvalidTransition, JobNotFound
from agentqueue.models import EventType, Job, JobEdit, JobFilter, ListOrder, QueueStats, TagMode
from agentqueue.states import JobStatus, Transition, allowed_sources


def list_statement(
    filter: JobFilter, *, limit: int, after_id: int | None, order: ListOrder
) -> sa.Select[Any]:
    """Build the keyset-paginated query of `list_jobs`."""
    query = sa.select(*JOB_COLUMNS)
    if filter.status:
        query = query.where(jobs.c.status.in_([s.value for s in filter.status]))
    if filter.job_type:
        query = query.where(jobs.c.job_type.in_(filter.job_type))
    if filter.queue:
        query = query.where(jobs.c.queue.in_(filter.queue))
    if filter.tags is not None:
        query = query.where(_tag_condition(filter.tags, filter.tag_mode))
    if filter.created_by is not None:
        query = query.where(jobs.c.created_by == filter.created_by)
    for column, low, high in (
        (jobs.c.created_at, filter.created_after, filter.created_before),
        (jobs.c.run_at, filter.run_at_after, filter.run_at_before),
    ):
        if low is not None:
            query = query.where(column >= low)
        if high is not None:
            query = query.where(column < high)
    newest = order is ListOrder.NEWEST
    if after_id is not None:
        query = query.where(jobs.c.id < after_id if newest else jobs.c.id > after_id)
    return query.order_by(jobs.c.id.desc() if newest else jobs.c.id).limit(limit)


def _tag_condition(tags: list[str], mode: TagMode) -> sa.ColumnElement[bool]:
    wanted = sorted(set(tags))
    having = sa.select(job_tags.c.job_id).where(job_tags.c.tag.in_(wanted))
    if mode is TagMode.ANY:
        return jobs.c.id.in_(having)
    if mode is TagMode.NONE:
        return jobs.c.id.not_in(having)
    with_all = jobs.c.id.in_(
        having.group_by(job_tags.c.job_id).having(sa.func.count() == len(wanted))
    )
    if mode is TagMode.ALL:
        return with_all if wanted else sa.true()
    others = sa.select(job_tags.c.job_id).where(job_tags.c.tag.not_in(wanted))
    if not wanted:  # exact match of "no tags"
        return jobs.c.id.not_in(sa.select(job_tags.c.job_id))
    return sa.and_(with_all, jobs.c.id.not_in(others))


def locked_job(
    conn: sa.Connection, lock: Callable[[sa.Select[Any]], sa.Select[Any]], job_id: int
) -> sa.Row[Any]:
    """Read one job inside a write transaction (locked), or raise `JobNotFound`."""
    row = (conn.execute(lock(sa.select(*JOB_COLUMNS).where(jobs.c.id == job_id)))).first()
    if row is None:
        raise JobNotFound(job_id)
    return row


def _refuse(row: sa.Row[Any], transition: Transition, action: str) -> InvalidTransition:
    allowed = ", ".join(sorted(s.value for s in allowed_sources(transition)))
    return InvalidTransition(
        f"cannot {action} job {row.id}: it is {row.status}; {action} applies to {allowed} jobs",
        job_id=row.id,
        status=row.status,
        allowed=sorted(s.value for s in allowed_sources(transition)),
    )


def _update(
    conn: sa.Connection, row: sa.Row[Any], values: dict[str, Any], event: dict[str, Any]
) -> Job:
    updated = conn.execute(
        sa.update(jobs).where(jobs.c.id == row.id).values(values).returning(*JOB_COLUMNS)
    )
    job = job_from_row(updated.one())
    insert_events(conn, [event])
    return job


def cancel(
    conn: sa.Connection, row: sa.Row[Any], at: datetime, *, lock: flow.Lock = flow.no_lock
) -> Job:
    """Cancel a blocked, pending or waiting job (and the jobs blocked on it), or ask a
    processing one to stop."""
    status = JobStatus(row.status)
    if status not in allowed_sources(Transition.CANCEL):
        raise _refuse(row, Transition.CANCEL, "cancel")
    if status is JobStatus.PROCESSING:
        if row.cancel_requested:
            return job_from_row(row)
        return _update(
            conn,
            row,
            {"cancel_requested": True, "updated_at": at},
            event_row(row._mapping, EventType.CANCEL_REQUESTED, status, at),
        )
    job = _update(
        conn,
        row,
        # `waiting_for` is set only while waiting: a token completed later resumes nothing.
        {
            "status": JobStatus.CANCELLED.value,
            "completed_at": at,
            "updated_at": at,
            "waiting_for": None,
        },
        event_row(row._mapping, EventType.CANCEL, JobStatus.CANCELLED, at, {"from": status.value}),
    )
    flow.settle(conn, lock, [(row._mapping, JobStatus.CANCELLED)], at)
    return job


def retry(conn: sa.Connection, row: sa.Row[Any], at: datetime) -> Job:
    """Put a failed or cancelled job back to pending now with fresh attempts (`blocked` while
    a prerequisite of its `depends_on` has not completed)."""
    status = JobStatus(row.status)
    if status not in allowed_sources(Transition.RETRY):
        raise _refuse(row, Transition.RETRY, "retry")
    target = flow.retry_status(conn, row)
    return _update(
        conn,
        row,
        {
            "status": target.value,
            "run_at": at,
            "attempts": 0,
            "updated_at": at,
            "completed_at": None,
            "locked_by": None,
            "lease_expires_at": None,
            "failure_reason": None,
            "cancel_requested": False,
            "progress": 0,
            "progress_message": None,
        },
        event_row(row._mapping, EventType.RETRY, target, at, {"from": status.value}),
    )


def edit(conn: sa.Connection, row: sa.Row[Any], change: JobEdit, at: datetime) -> Job:
    """Apply `change` to a pending job and record which fields changed."""
    status = JobStatus(row.status)
    if status not in allowed_sources(Transition.EDIT):
        raise _refuse(row, Transition.EDIT, "edit")
    values = change.model_dump(exclude_unset=True)
    if "tags" in values:
        conn.execute(sa.delete(job_tags).where(job_tags.c.job_id == row.id))
        if values["tags"]:
            conn.execute(
                job_tags.insert(), [{"job_id": row.id, "tag": tag} for tag in values["tags"]]
            )
    fields = sorted(values)
    values["updated_at"] = at
    return _update(
        conn,
        row,
        values,
        event_row(row._mapping, EventType.EDIT, status, at, {"fields": fields}),
    )


def stats_from_counts(counts: list[tuple[str, str, int]]) -> QueueStats:
    """Fold (job_type, status, count) rows into `QueueStats` with every status present."""
    by_type: dict[str, dict[JobStatus, int]] = {}
    totals = dict.fromkeys(JobStatus, 0)
    for job_type, status, count in counts:
        per_type = by_type.setdefault(job_type, dict.fromkeys(JobStatus, 0))
        per_type[JobStatus(status)] += count
        totals[JobStatus(status)] += count
    return QueueStats(by_type=by_type, totals=totals)
