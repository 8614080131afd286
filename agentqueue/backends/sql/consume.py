"""The worker side of the SQL stores: the claim query and applying attempt outcomes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agentqueue.backends.base import Outcome, OutcomeKind
from agentqueue.backends.sql.rows import error_json, event_row, insert_events
from agentqueue.backends.sql.tables import jobs
from agentqueue.models import EventType
from agentqueue.states import JobStatus

_STATUS_AFTER = {
    OutcomeKind.COMPLETE: JobStatus.COMPLETED,
    OutcomeKind.RETRY: JobStatus.PENDING,
    OutcomeKind.FAIL: JobStatus.FAILED,
    OutcomeKind.RELEASE: JobStatus.PENDING,
    OutcomeKind.CANCEL: JobStatus.CANCELLED,
}
_EVENT_OF = {
    OutcomeKind.COMPLETE: EventType.COMPLETE,
    OutcomeKind.RETRY: EventType.RETRY_LATER,
    OutcomeKind.FAIL: EventType.FAIL,
    OutcomeKind.RELEASE: EventType.RELEASE,
    OutcomeKind.CANCEL: EventType.CANCEL,
}


def claim_statement(
    queue: str | None, job_types: Sequence[str] | None, limit: int, now: datetime
) -> sa.Select[Any]:
    """Select the ids of up to `limit` due pending jobs in claim order."""
    query = sa.select(jobs.c.id).where(
        jobs.c.status == JobStatus.PENDING.value, jobs.c.run_at <= now
    )
    if queue is not None:
        query = query.where(jobs.c.queue == queue)
    if job_types:
        query = query.where(jobs.c.job_type.in_(list(job_types)))
    return query.order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id).limit(limit)


def _values(outcome: Outcome, row: Any, at: datetime) -> dict[str, Any]:
    """Return the new column values (as bind names b_<column>) for one outcome."""
    values: dict[str, Any] = {
        "b_id": row.id,
        "b_status": _STATUS_AFTER[outcome.kind].value,
        "b_updated_at": at,
        "b_lease_expires_at": None,
    }
    kind = outcome.kind
    if kind is OutcomeKind.COMPLETE:
        values |= {"b_output": outcome.output, "b_progress": 100, "b_completed_at": at}
    elif kind is OutcomeKind.CANCEL:
        values |= {"b_completed_at": at}
    elif kind is OutcomeKind.RELEASE:
        values |= {"b_attempts": row.attempts - 1, "b_run_at": at, "b_locked_by": None}
    if outcome.error is not None:
        values |= {
            "b_error_history": [*row.error_history, error_json(outcome.error)],
            "b_last_error": outcome.error.message,
            "b_failure_reason": outcome.error.reason.value,
        }
    if kind is OutcomeKind.RETRY:
        values |= {"b_run_at": at + timedelta(seconds=outcome.retry_in), "b_locked_by": None}
    elif kind is OutcomeKind.FAIL:
        values |= {"b_completed_at": at}
    return values


async def apply_outcomes(
    conn: AsyncConnection,
    outcomes: Sequence[Outcome],
    rows: Mapping[int, Any],
    at: datetime,
    *,
    event: EventType | None = None,
) -> None:
    """Write outcomes whose rows the caller has checked and locked; one executemany per shape.

    `event` overrides the event type (the supervisor's rescues record `rescue`).
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    events: list[dict[str, Any]] = []
    for outcome in outcomes:
        row = rows[outcome.lease.job_id]
        values = _values(outcome, row, at)
        groups.setdefault(tuple(sorted(values)), []).append(values)
        status = _STATUS_AFTER[outcome.kind]
        data: dict[str, Any] = {"attempt": row.attempts}
        if outcome.error is not None:
            data |= {"error": outcome.error.message, "reason": outcome.error.reason.value}
        if outcome.kind is OutcomeKind.RETRY:
            data["retry_in"] = outcome.retry_in
        if event is EventType.RESCUE:
            data["worker"] = row.locked_by
        events.append(event_row(row._mapping, event or _EVENT_OF[outcome.kind], status, at, data))
    for names, params in groups.items():
        statement = (
            sa.update(jobs)
            .where(jobs.c.id == sa.bindparam("b_id"))
            .values({name[2:]: sa.bindparam(name) for name in names if name != "b_id"})
        )
        await conn.execute(statement, params)
    await insert_events(conn, events)
