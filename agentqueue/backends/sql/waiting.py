"""Waiting jobs going back to pending: when their time comes, or when their token closes.

A job waits (status `waiting`) after `durable.suspend`: until `run_at` (a durable sleep, or the
token's expiry; `FOREVER` for a token without one) and, for a token wait, until the token in
`waiting_for` is completed or expired. Both ways out write a `resume` event in the transaction
that resumes the job, and both leave `waiting_for` empty: it is set only while waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.sql.dialect import SqlDialect
from agentqueue.backends.sql.rows import event_row, insert_events
from agentqueue.backends.sql.tables import IS_WAITING, jobs
from agentqueue.models import EventType
from agentqueue.states import JobStatus

_WAITER_COLUMNS: tuple[sa.ColumnElement[Any], ...] = (
    jobs.c.id,
    jobs.c.job_type,
    jobs.c.queue,
    jobs.c.run_at,
    jobs.c.waiting_for,
)


def due_probe(at: datetime) -> sa.Select[Any]:
    """Select one id of a waiting job whose time has come (a cheap check before writing)."""
    return _by_wake_time(sa.select(jobs.c.id).where(IS_WAITING, jobs.c.run_at <= at)).limit(1)


def _by_wake_time(query: sa.Select[Any]) -> sa.Select[Any]:
    # Without statistics SQLite picks the (status, id) index and reads every waiting job.
    return query.with_hint(jobs, "INDEXED BY aq_jobs_wake", dialect_name="sqlite")


def resume_due(conn: sa.Connection, dialect: SqlDialect, at: datetime, limit: int) -> list[int]:
    """Resume up to `limit` waiting jobs whose `run_at` has passed; see `Backend.resume_due`.

    Rows another supervisor holds are skipped (PostgreSQL), so sweeps running at once resume
    disjoint jobs. `run_at` is kept: the job has been due since then.
    """
    due = _by_wake_time(
        sa.select(*_WAITER_COLUMNS)
        .where(IS_WAITING, jobs.c.run_at <= at)
        .order_by(jobs.c.run_at)
        .limit(limit)
    )
    rows = conn.execute(dialect.lock(due)).all()

    def data(row: sa.Row[Any]) -> dict[str, Any]:
        found: dict[str, Any] = {"until": row.run_at.isoformat()}
        if row.waiting_for is not None:
            found["token"] = row.waiting_for
        return found

    return _resume(conn, rows, at, data, run_at=None)


def resume_waiters(
    conn: sa.Connection,
    dialect: SqlDialect,
    token_ids: Sequence[str],
    at: datetime,
    *,
    expired: bool,
) -> list[int]:
    """Resume the jobs waiting on these tokens, pending at `at`; return their ids.

    The caller has just closed the tokens in this transaction. A waiter's row is waited for,
    not skipped: a busy job must not miss its token.
    """
    query = (
        sa.select(*_WAITER_COLUMNS)
        .where(IS_WAITING, jobs.c.waiting_for.in_(list(token_ids)))
        .with_hint(jobs, "INDEXED BY aq_jobs_waiting_for", dialect_name="sqlite")
        .order_by(jobs.c.id)  # lock in id order, like every other multi-row fence
    )
    rows = conn.execute(dialect.lock_wait(query)).all()

    def data(row: sa.Row[Any]) -> dict[str, Any]:
        found: dict[str, Any] = {"token": row.waiting_for}
        if expired:
            found["expired"] = True
        return found

    return _resume(conn, rows, at, data, run_at=at)


def _resume(
    conn: sa.Connection,
    rows: Sequence[sa.Row[Any]],
    at: datetime,
    data: Callable[[sa.Row[Any]], dict[str, Any]],
    *,
    run_at: datetime | None,
) -> list[int]:
    """Put locked waiting rows back to pending (at `run_at`, or their own) with `resume` events."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    values: dict[str, Any] = {
        "status": JobStatus.PENDING.value,
        "waiting_for": None,
        "updated_at": at,
    }
    if run_at is not None:
        values["run_at"] = run_at
    conn.execute(sa.update(jobs).where(jobs.c.id.in_(ids), IS_WAITING).values(values))
    events = [event_row(r._mapping, EventType.RESUME, JobStatus.PENDING, at, data(r)) for r in rows]
    insert_events(conn, events)
    return sorted(ids)
