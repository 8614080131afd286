"""Durable execution on the SQL stores, the running handler's writes: output now, memoized
steps, and suspending the job to wait (a durable sleep or a token).

Each write is fenced exactly like `consume.set_progress`: the job row is read locked by
`consume.owned` (still `processing`, under this worker, at this attempt), and a lost lease
writes nothing. Each writes its event in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.base import Lease, SuspendResult
from agentqueue.backends.sql import flow, tokens
from agentqueue.backends.sql.consume import owned
from agentqueue.backends.sql.dialect import SqlDialect
from agentqueue.backends.sql.rows import event_row, insert_events, token_from_row
from agentqueue.backends.sql.tables import job_steps, jobs
from agentqueue.errors import TokenNotFound
from agentqueue.models import EventType
from agentqueue.states import JobStatus


def set_output(
    conn: sa.Connection,
    dialect: SqlDialect,
    *,
    worker_id: str,
    lease: Lease,
    output: Any,
    at: datetime,
) -> bool:
    """Store the running job's output under a held lease; see `Backend.set_output`."""
    row = owned(conn, dialect, worker_id, [lease]).get(lease.job_id)
    if row is None:
        return False
    conn.execute(
        sa.update(jobs).where(jobs.c.id == lease.job_id).values(output=output, updated_at=at)
    )
    insert_events(conn, [event_row(row._mapping, EventType.OUTPUT, JobStatus.PROCESSING, at)])
    return True


_STEP_COLUMNS: tuple[sa.ColumnElement[Any], ...] = (job_steps.c.name, job_steps.c.value)


def steps_statement(job_id: int) -> sa.Select[Any]:
    """Select a job's memoized steps as (name, value)."""
    return sa.select(*_STEP_COLUMNS).where(job_steps.c.job_id == job_id)


def save_step(
    conn: sa.Connection,
    dialect: SqlDialect,
    *,
    worker_id: str,
    lease: Lease,
    name: str,
    value: Any,
    at: datetime,
) -> bool:
    """Memoize a step under a held lease; see `Backend.save_step`.

    The first value of a name stays (the insert does nothing on the primary key), and only
    a stored step writes a `step` event.
    """
    row = owned(conn, dialect, worker_id, [lease]).get(lease.job_id)
    if row is None:
        return False
    stored = conn.execute(
        dialect.insert_ignoring_conflicts(job_steps)
        .values(job_id=lease.job_id, name=name, value=value, created_at=at)
        .returning(job_steps.c.name)
    ).first()
    if stored is not None:
        insert_events(
            conn,
            [event_row(row._mapping, EventType.STEP, JobStatus.PROCESSING, at, {"name": name})],
        )
    return True


def suspend(
    conn: sa.Connection,
    dialect: SqlDialect,
    *,
    worker_id: str,
    lease: Lease,
    until: datetime,
    token_id: str | None,
    at: datetime,
) -> SuspendResult:
    """processing -> waiting under a held lease; see `Backend.suspend`.

    Raises:
        TokenNotFound: `token_id` names no token (nothing is written).
    """
    row = owned(conn, dialect, worker_id, [lease]).get(lease.job_id)
    if row is None:
        return SuspendResult(suspended=False, lost=True)
    if token_id is not None:
        # Locked, so a `complete_token` racing this wait either commits before (seen here:
        # not suspended) or after (it then finds this job waiting and resumes it).
        token = tokens.lock(conn, dialect, token_id)
        if token is None:
            raise TokenNotFound(token_id)
        if token.status != "pending":
            return SuspendResult(suspended=False, token=token_from_row(token))
        if tokens.is_past(token, at):
            expired, _ = tokens.expire_locked(conn, dialect, token_id, at)
            return SuspendResult(suspended=False, token=expired)
    if row.cancel_requested:
        # A cancel request is final: a job that went waiting now would be resumed, claimed
        # with the request cleared, and run again. It ends here; its handler stops as for a
        # wait.
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == row.id)
            .values(
                status=JobStatus.CANCELLED.value,
                completed_at=at,
                updated_at=at,
                lease_expires_at=None,
            )
        )
        insert_events(
            conn,
            [
                event_row(
                    row._mapping,
                    EventType.CANCEL,
                    JobStatus.CANCELLED,
                    at,
                    {"attempt": row.attempts},
                )
            ],
        )
        flow.settle(conn, dialect.lock_wait, [(row._mapping, JobStatus.CANCELLED)], at)
        return SuspendResult(suspended=True)
    conn.execute(
        sa.update(jobs)
        .where(jobs.c.id == row.id)
        .values(
            status=JobStatus.WAITING.value,
            # A wait is not a failed attempt: the replay after the wait is the same attempt.
            attempts=row.attempts - 1,
            locked_by=None,
            lease_expires_at=None,
            waiting_for=token_id,
            run_at=until,
            updated_at=at,
        )
    )
    data = {"until": until.astimezone(UTC).isoformat(), "token": token_id}
    insert_events(conn, [event_row(row._mapping, EventType.WAIT, JobStatus.WAITING, at, data)])
    return SuspendResult(suspended=True)
