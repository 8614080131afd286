"""Dependencies and dead letters on the SQL stores: what happens when a job ends.

A job added with `depends_on` is `blocked` until every prerequisite completed. The edges live in
`aq_job_deps` (dependent, prerequisite); a prerequisite is marked `has_dependents` when the
first edge to it is written, so ending a job without dependents costs nothing more.

When a job ends inside a write transaction, the caller hands it to `settle`, which, in the same
transaction: unblocks dependents whose prerequisites are now all completed (`unblock` event),
cancels the blocked dependents of a failed or cancelled job with `dependency_failed`, and so on
down the chain (`cancel` events), and enqueues the dead-letter job of a job that failed for good.

Race-freedom on PostgreSQL: adding a dependent locks its prerequisites (`FOR UPDATE`, id order)
and sets `has_dependents`; ending a prerequisite locks the same row. The two serialize on it: if
the dependent's insert wins, the ending transaction's later statements (READ COMMITTED: a new
snapshot each) see the new edge; if the ending wins, the insert reads the prerequisite's final
status. One-statement completions (`pg_statements.COMPLETE`) skip rows with `has_dependents`,
which then go through the transactional path here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.base import InsertJob
from agentqueue.backends.sql.rows import JOB_COLUMNS, event_row, insert_events
from agentqueue.backends.sql.tables import job_deps, job_tags, jobs
from agentqueue.errors import DependencyInvalid
from agentqueue.models import EventType, FailureReason
from agentqueue.states import ACTIVE, JobStatus

Lock = Callable[[Any], Any]
"""A row lock applied to a select (`SqlDialect.lock_wait`: a `Select` in, a `Select` out)."""


def no_lock(query: sa.Select[Any]) -> sa.Select[Any]:
    """The lock of a store with one writer at a time (SQLite): none needed."""
    return query


_ENDED_BADLY = frozenset({JobStatus.FAILED.value, JobStatus.CANCELLED.value})
_ACTIVE = sorted(status.value for status in ACTIVE)


def tag_prerequisites(conn: sa.Connection, tags: Iterable[str]) -> list[int]:
    """Return the ids of the unfinished jobs that carry any of `tags` (a drain's prerequisites)."""
    wanted = sorted(set(tags))
    if not wanted:
        return []
    query = (
        sa.select(jobs.c.id)
        .where(
            jobs.c.id.in_(sa.select(job_tags.c.job_id).where(job_tags.c.tag.in_(wanted))),
            jobs.c.status.in_(_ACTIVE),
        )
        .order_by(jobs.c.id)
    )
    return list(conn.execute(query).scalars())


def lock_prerequisites(conn: sa.Connection, lock: Lock, ids: Iterable[int]) -> dict[int, str]:
    """Lock existing prerequisites, mark them `has_dependents`, return their statuses.

    Raises:
        DependencyInvalid: a prerequisite does not exist, or failed or was cancelled.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = lock(
        sa.select(jobs.c.id, jobs.c.status, jobs.c.has_dependents)
        .where(jobs.c.id.in_(wanted))
        .order_by(jobs.c.id)
    )
    rows = {row.id: row for row in conn.execute(query)}
    for job_id in wanted:
        row = rows.get(job_id)
        if row is None:
            raise DependencyInvalid(job_id, None)
        if row.status in _ENDED_BADLY:
            raise DependencyInvalid(job_id, row.status)
    unmarked = [job_id for job_id, row in rows.items() if not row.has_dependents]
    if unmarked:
        conn.execute(sa.update(jobs).where(jobs.c.id.in_(unmarked)).values(has_dependents=True))
    return {job_id: row.status for job_id, row in rows.items()}


def write_edges(conn: sa.Connection, edges: Mapping[int, Sequence[int]]) -> None:
    """Store each dependent's prerequisites: the `aq_job_deps` rows and `depends_on`."""
    if not edges:
        return
    conn.execute(
        job_deps.insert(),
        [
            {"job_id": job_id, "depends_on_id": prerequisite}
            for job_id, prerequisites in edges.items()
            for prerequisite in prerequisites
        ],
    )
    conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == sa.bindparam("b_id"))
        .values(depends_on=sa.bindparam("b_depends_on")),
        [
            {"b_id": job_id, "b_depends_on": list(prerequisites)}
            for job_id, prerequisites in edges.items()
        ],
    )


def settle(
    conn: sa.Connection,
    lock: Lock,
    ended: Sequence[tuple[Mapping[Any, Any], JobStatus]],
    at: datetime,
) -> None:
    """Act on jobs that just ended in this transaction (rows as before the change, and the
    status they ended in): unblock or cancel their dependents, enqueue dead letters."""
    linked = [(row, status) for row, status in ended if row["has_dependents"]]
    completed = [row["id"] for row, status in linked if status is JobStatus.COMPLETED]
    failed = {
        row["id"]: (row["job_type"], status.value)
        for row, status in linked
        if status in (JobStatus.FAILED, JobStatus.CANCELLED)
    }
    if completed:
        _unblock(conn, lock, completed, at)
    if failed:
        _cascade(conn, lock, failed, at)
    letters = [
        row["id"] for row, status in ended if status is JobStatus.FAILED and row["dead_letter"]
    ]
    if letters:
        from agentqueue.backends.sql import produce  # produce imports this module

        # Read back as failed: the envelope carries the final attempt count and error.
        rows = conn.execute(sa.select(*JOB_COLUMNS).where(jobs.c.id.in_(letters))).all()
        produce.insert(conn, [dead_letter_job(row._mapping, at) for row in rows], at, lock=lock)


def _unblock(conn: sa.Connection, lock: Lock, completed: Sequence[int], at: datetime) -> None:
    prerequisite = jobs.alias("prerequisite")
    unmet = (
        sa.select(job_deps.c.job_id)
        .join(prerequisite, prerequisite.c.id == job_deps.c.depends_on_id)
        .where(
            job_deps.c.job_id == jobs.c.id,
            prerequisite.c.status != JobStatus.COMPLETED.value,
        )
        .exists()
    )
    query = lock(
        sa.select(*JOB_COLUMNS)
        .where(
            jobs.c.status == JobStatus.BLOCKED.value,
            jobs.c.id.in_(
                sa.select(job_deps.c.job_id).where(job_deps.c.depends_on_id.in_(list(completed)))
            ),
            ~unmet,
        )
        .order_by(jobs.c.id)
    )
    rows = conn.execute(query).all()
    if not rows:
        return
    conn.execute(
        sa.update(jobs)
        .where(jobs.c.id.in_([row.id for row in rows]))
        .values(status=JobStatus.PENDING.value, updated_at=at)
    )
    insert_events(
        conn, [event_row(row._mapping, EventType.UNBLOCK, JobStatus.PENDING, at) for row in rows]
    )


def _cascade(
    conn: sa.Connection, lock: Lock, failed: dict[int, tuple[str, str]], at: datetime
) -> None:
    """Cancel the blocked dependents of `failed` (id -> job type, status), transitively."""
    while failed:
        edges = conn.execute(
            sa.select(job_deps.c.job_id, job_deps.c.depends_on_id)
            .where(job_deps.c.depends_on_id.in_(list(failed)))
            .order_by(job_deps.c.job_id, job_deps.c.depends_on_id)
        ).all()
        cause: dict[int, int] = {}
        for job_id, prerequisite in edges:
            cause.setdefault(job_id, prerequisite)  # the lowest failed prerequisite is named
        if not cause:
            return
        rows = conn.execute(
            lock(
                sa.select(*JOB_COLUMNS)
                .where(
                    jobs.c.id.in_(list(cause)),
                    jobs.c.status == JobStatus.BLOCKED.value,
                )
                .order_by(jobs.c.id)
            )
        ).all()
        params: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for row in rows:
            prerequisite = cause[row.id]
            job_type, status = failed[prerequisite]
            message = f"job {prerequisite} ({job_type}), which this job depends on, {status}"
            params.append({"b_id": row.id, "b_last_error": message})
            events.append(
                event_row(
                    row._mapping,
                    EventType.CANCEL,
                    JobStatus.CANCELLED,
                    at,
                    {
                        "from": JobStatus.BLOCKED.value,
                        "reason": FailureReason.DEPENDENCY_FAILED.value,
                        "dependency": prerequisite,
                    },
                )
            )
        if params:
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == sa.bindparam("b_id"))
                .values(
                    status=JobStatus.CANCELLED.value,
                    completed_at=at,
                    updated_at=at,
                    failure_reason=FailureReason.DEPENDENCY_FAILED.value,
                    last_error=sa.bindparam("b_last_error"),
                ),
                params,
            )
            insert_events(conn, events)
        failed = {row.id: (row.job_type, JobStatus.CANCELLED.value) for row in rows}


def retry_status(conn: sa.Connection, row: Any) -> JobStatus:
    """Return where a retried job goes: `blocked` while a prerequisite has not completed,
    else `pending`.

    Raises:
        DependencyInvalid: a prerequisite failed or was cancelled (retry that one first).
    """
    if not row.depends_on:
        return JobStatus.PENDING
    statuses = dict(
        conn.execute(
            sa.select(jobs.c.id, jobs.c.status)
            .where(jobs.c.id.in_(list(row.depends_on)))
            .order_by(jobs.c.id)
        ).all()
    )
    for prerequisite, status in statuses.items():
        if status in _ENDED_BADLY:
            raise DependencyInvalid(prerequisite, status)
    # A prerequisite that no longer exists was purged after it completed.
    if any(status != JobStatus.COMPLETED.value for status in statuses.values()):
        return JobStatus.BLOCKED
    return JobStatus.PENDING


def dead_letter_job(row: Mapping[Any, Any], at: datetime) -> InsertJob:
    """The dead-letter job of a job that failed for good (`row` read after the failure was
    written): its payload is a `DeadLetter` envelope, its options those resolved at enqueue."""
    history = list(row["error_history"])
    envelope = {
        "job_id": row["id"],
        "job_type": row["job_type"],
        "queue": row["queue"],
        "payload": row["payload"],
        "attempts": row["attempts"],
        "tags": row["tags"],
        "group": row["job_group"],
        "failed_at": at.isoformat(timespec="microseconds"),
        "error": history[-1] if history else None,
        "error_history": history,
    }
    return InsertJob.for_dead_letter(row["dead_letter"], envelope)
