"""PostgreSQL's one-round-trip forms of the two hottest operations.

Enqueue and claim each touch two or three tables (jobs, tags, events). PostgreSQL can do all of
it in one statement with data-modifying CTEs, run in autocommit: one round trip instead of
four (BEGIN, two or three statements, COMMIT), which on a loopback connection costs more than
the WAL flush. The results are the same rows and events as the portable forms in `produce.py`
and `consume.py` (which SQLite uses: its CTEs cannot modify data), and the same conformance
tests run over both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from agentqueue.backends.base import InsertJob, Outcome
from agentqueue.backends.sql.consume import claim_values
from agentqueue.backends.sql.tables import (
    IS_PENDING,
    UTCDateTime,
    job_events,
    job_tags,
    jobs,
    limits,
)
from agentqueue.backends.stored import new_job_times
from agentqueue.models import EventType
from agentqueue.states import JobStatus

_EVENT_COLUMNS = ["job_id", "job_type", "queue", "type", "status", "at", "data"]


_ARRAYS: dict[str, Any] = {
    "queue": sa.Text(),
    "job_type": sa.Text(),
    "priority": sa.Integer(),
    "run_at": sa.DateTime(timezone=True),
    "max_attempts": sa.Integer(),
    "timeout": sa.Float(),
    "retry_delay": sa.Float(),
    "retry_backoff": sa.Boolean(),
    "retry_delay_max": sa.Float(),
    "force_kill_on_timeout": sa.Boolean(),
    "job_group": sa.Text(),
    "dead_letter": sa.Text(),
    "origin": sa.Text(),
    "created_by": sa.Text(),
}
"""The columns that differ between a batch's jobs, each bound as one typed array (asyncpg
encodes them in C); `dead_letter` and `origin` are JSON text, NULL for none."""

_JSON_LISTS = ("payloads", "tags")
"""The JSON columns every job has, each bound as one JSON array (one encoding per batch)."""


def _build_insert() -> sa.Select[Any]:
    arrays = [
        sa.cast(sa.bindparam(name, type_=postgresql.ARRAY(kind)), postgresql.ARRAY(kind))
        for name, kind in _ARRAYS.items()
    ]
    r = sa.func.unnest(*arrays).table_valued(
        *(sa.column(name, kind) for name, kind in _ARRAYS.items()), with_ordinality="n"
    )
    r = r.render_derived(name="r")
    position = sa.cast(r.c.n - 1, sa.Integer())

    def element(name: str) -> sa.ColumnElement[Any]:
        listed = sa.cast(sa.bindparam(name, type_=postgresql.JSONB()), postgresql.JSONB())
        return listed.op("->", return_type=postgresql.JSONB())(position)

    at = sa.bindparam("at", type_=UTCDateTime())
    values: dict[str, sa.ColumnElement[Any]] = {
        "queue": r.c.queue,
        "job_type": r.c.job_type,
        "payload": element("payloads"),
        "status": sa.literal(JobStatus.PENDING.value),
        "priority": r.c.priority,
        "run_at": r.c.run_at,
        "created_at": at,
        "updated_at": at,
        "attempts": sa.literal(0),
        "max_attempts": r.c.max_attempts,
        "error_history": sa.cast(sa.literal("[]"), postgresql.JSONB()),
        "tags": element("tags"),
        "timeout": r.c.timeout,
        "retry_delay": r.c.retry_delay,
        "retry_backoff": r.c.retry_backoff,
        "retry_delay_max": r.c.retry_delay_max,
        "progress": sa.literal(0),
        "cancel_requested": sa.false(),
        "force_kill_on_timeout": r.c.force_kill_on_timeout,
        "job_group": r.c.job_group,
        "dead_letter": sa.cast(r.c.dead_letter, postgresql.JSONB()),
        "origin": sa.cast(r.c.origin, postgresql.JSONB()),
        "created_by": r.c.created_by,
    }
    inserted = (
        sa.insert(jobs)
        # A function scan yields the arrays in order, so rows (and ids) follow the input order.
        .from_select(list(values), sa.select(*values.values()).select_from(r))
        .returning(jobs.c.id, jobs.c.job_type, jobs.c.queue, jobs.c.created_at, jobs.c.tags)
        .cte("inserted")
    )
    events = sa.insert(job_events).from_select(
        _EVENT_COLUMNS,
        sa.select(
            inserted.c.id,
            inserted.c.job_type,
            inserted.c.queue,
            sa.literal(EventType.ADDED.value),
            sa.literal(JobStatus.PENDING.value),
            inserted.c.created_at,
            sa.cast(sa.literal("{}"), postgresql.JSONB),
        ),
    )
    tags = sa.insert(job_tags).from_select(
        ["job_id", "tag"],
        sa.select(inserted.c.id, sa.func.jsonb_array_elements_text(inserted.c.tags)),
    )
    return (
        sa.select(inserted.c.id)
        .add_cte(events.cte("events"), tags.cte("tags"))
        # Rows are inserted in input order, and sequence values follow: id order is input order.
        .order_by(inserted.c.id)
    )


INSERT = _build_insert()
"""Insert new jobs without idempotency keys or dependencies (those take the portable path),
with their tags and `added` events; select the new ids in input order. The batch comes as
one array per column (`insert_params`), so the statement's text is constant: compiled and
prepared once, whatever the batch size."""


def insert_params(new_jobs: Sequence[InsertJob], at: datetime) -> dict[str, Any]:
    """Return the parameters of `INSERT` for jobs created at `at` (by the server's clock)."""
    columns: dict[str, list[Any]] = {name: [] for name in _ARRAYS}
    for job in new_jobs:
        columns["run_at"].append(new_job_times(job, at)[0])
        columns["dead_letter"].append(
            None if job.dead_letter is None else json.dumps(job.dead_letter)
        )
        columns["origin"].append(None if job.origin is None else json.dumps(job.origin))
        columns["created_by"].append(None if job.origin is None else job.origin["actor"])
    for name in _COPIED:
        columns[name] = [getattr(job, name) for job in new_jobs]
    columns["job_group"] = [job.group for job in new_jobs]
    return {
        **columns,
        "at": at,
        "payloads": [job.payload for job in new_jobs],
        "tags": [job.tags for job in new_jobs],
    }


_COPIED = (
    "queue",
    "job_type",
    "priority",
    "max_attempts",
    "timeout",
    "retry_delay",
    "retry_backoff",
    "retry_delay_max",
    "force_kill_on_timeout",
)
"""The `INSERT` arrays that are an `InsertJob` field as it is."""


def _claim_parts(by_queue: bool, by_types: bool) -> tuple[sa.CTE, sa.CTE]:
    """The claim's CTEs for one filter shape (the claimed rows, their `claim` events); every
    value is a bind parameter."""
    at = sa.bindparam("at", type_=UTCDateTime())
    # With flow limits the transactional claim (limits.py) decides; this one then takes
    # nothing (an uncorrelated test, evaluated once per statement).
    no_limits = ~sa.exists(sa.select(limits.c.scope))
    due = sa.select(jobs.c.id).where(IS_PENDING, jobs.c.run_at <= at, no_limits)
    if by_queue:
        due = due.where(jobs.c.queue == sa.bindparam("queue"))
    if by_types:
        due = due.where(jobs.c.job_type.in_(sa.bindparam("job_types", expanding=True)))
    picked = (
        due.order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer()))
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    worker = sa.bindparam("worker", type_=sa.String())
    claimed = (
        sa.update(jobs)
        .where(jobs.c.id.in_(sa.select(picked.c.id)))
        .values(claim_values(worker, sa.bindparam("lease_until", type_=UTCDateTime()), at))
        .returning(*jobs.c)
        .cte("claimed")
    )
    events = sa.insert(job_events).from_select(
        _EVENT_COLUMNS,
        sa.select(
            claimed.c.id,
            claimed.c.job_type,
            claimed.c.queue,
            sa.literal(EventType.CLAIM.value),
            sa.literal(JobStatus.PROCESSING.value),
            at,
            sa.func.jsonb_build_object(
                "attempt",
                claimed.c.attempts,
                "worker",
                worker,
                # Seconds from due to claimed: the wait-time metric (as the portable claim).
                "waited",
                sa.func.round(
                    sa.cast(
                        sa.func.greatest(sa.extract("epoch", at - claimed.c.run_at), 0),
                        sa.Numeric(),
                    ),
                    6,
                ),
            ),
        ),
    )
    return claimed, events.cte("claim_events")


def _build_claim(by_queue: bool, by_types: bool) -> sa.Select[Any]:
    """The claim statement for one filter shape: it selects the claimed rows."""
    claimed, events = _claim_parts(by_queue, by_types)
    return sa.select(claimed).add_cte(events)


_CLAIM_ANY = _build_claim(False, False)
"""The unfiltered claim, built once: building it costs more than running it."""


def claim_any() -> sa.Select[Any]:
    """The unfiltered claim statement (the one most claims run)."""
    return _CLAIM_ANY


CLAIM_STATE = ("next_due", "limited")
"""The columns `CLAIM_ANY_REPORTING` adds to the claimed rows."""


def _build_claim_reporting() -> sa.Select[Any]:
    claimed, events = _claim_parts(False, False)
    # Seen from the claim's own snapshot, where the rows it claimed are still pending.
    left = (
        sa.select(sa.func.min(jobs.c.run_at))
        .where(IS_PENDING, jobs.c.id.not_in(sa.select(claimed.c.id)))
        .scalar_subquery()
    )
    state = sa.select(
        left.label(CLAIM_STATE[0]),
        sa.exists(sa.select(limits.c.scope)).label(CLAIM_STATE[1]),
    ).subquery("state")
    return (
        sa.select(claimed, *(state.c[name] for name in CLAIM_STATE))
        .select_from(state.outerjoin(claimed, sa.true()))
        .add_cte(events)
    )


CLAIM_ANY_REPORTING = _build_claim_reporting()
"""The unfiltered claim that also reports what it left, so a worker whose claim came back short
needs no more round trips before it waits: one row per claimed job, or one row of NULL job
columns when it claimed none, each with `next_due` (the earliest run_at of a pending job it
did not take: what `next_due` would answer right after it) and `limited` (whether the store
has flow limits, under which this statement takes nothing)."""


def claim(
    *,
    worker_id: str,
    queue: str | None,
    job_types: Sequence[str] | None,
    limit: int,
    lease_seconds: float,
    at: datetime,
) -> tuple[sa.Select[Any], dict[str, Any]]:
    """Claim due jobs (SKIP LOCKED) and write their `claim` events: the statement and its
    parameters; it selects the claimed rows."""
    params: dict[str, Any] = {
        "at": at,
        "lease_until": at + timedelta(seconds=lease_seconds),
        "worker": worker_id,
        "limit": limit,
    }
    if queue is None and not job_types:
        return _CLAIM_ANY, params
    # Filtered claims are built per call: SQLAlchemy 2.1 loses a bind value when a reused
    # statement like this one also filters by a bound queue name.
    statement = _build_claim(queue is not None, bool(job_types))
    return statement.params(queue=queue, job_types=list(job_types or [])), params


def _complete_parts() -> tuple[sa.CTE, sa.CTE]:
    """The completion's CTEs: the completed rows (id, job_type, queue, attempts) and their
    `complete` events."""
    done_rows = (
        sa.func.jsonb_to_recordset(sa.bindparam("rows", type_=postgresql.JSONB))
        .table_valued(
            sa.column("id", sa.BigInteger()),
            sa.column("attempt", sa.Integer()),
            sa.column("output", postgresql.JSONB()),
        )
        .render_derived(name="d", with_types=True)
    )
    at = sa.bindparam("at", type_=UTCDateTime())
    # Lock the rows in id order first, as the portable fence does, so a concurrent heartbeat
    # of the same worker can never deadlock with this statement.
    locked = (
        sa.select(jobs.c.id)
        .where(jobs.c.id.in_(sa.select(done_rows.c.id)))
        .order_by(jobs.c.id)
        .with_for_update()
        .cte("locked")
    )
    completed = (
        sa.update(jobs)
        .where(
            jobs.c.id == done_rows.c.id,
            jobs.c.id.in_(sa.select(locked.c.id)),
            jobs.c.attempts == done_rows.c.attempt,
            jobs.c.status == JobStatus.PROCESSING.value,
            jobs.c.locked_by == sa.bindparam("worker"),
            # A job others depend on is settled by the transactional path (flow.py).
            jobs.c.has_dependents.is_(sa.false()),
        )
        .values(
            status=JobStatus.COMPLETED.value,
            output=done_rows.c.output,
            progress=100,
            completed_at=at,
            updated_at=at,
            lease_expires_at=None,
        )
        .returning(jobs.c.id, jobs.c.job_type, jobs.c.queue, jobs.c.attempts)
        .cte("completed")
    )
    events = sa.insert(job_events).from_select(
        _EVENT_COLUMNS,
        sa.select(
            completed.c.id,
            completed.c.job_type,
            completed.c.queue,
            sa.literal(EventType.COMPLETE.value),
            sa.literal(JobStatus.COMPLETED.value),
            at,
            sa.func.jsonb_build_object("attempt", completed.c.attempts),
        ),
    )
    return completed, events.cte("complete_events")


def _build_complete() -> sa.Select[Any]:
    completed, events = _complete_parts()
    return sa.select(completed.c.id).add_cte(events)


COMPLETE = _build_complete()
"""Complete a batch of attempts still held by one worker (the fence: status, worker, attempt)
that no job depends on, with their `complete` events; select the ids it completed (the others
lost their lease, or have dependents to settle in a transaction)."""


def complete_params(worker_id: str, outcomes: Sequence[Outcome], at: datetime) -> dict[str, Any]:
    """Return the parameters of `COMPLETE` for COMPLETE outcomes."""
    return {
        "worker": worker_id,
        "at": at,
        "rows": [
            {"id": o.lease.job_id, "attempt": o.lease.attempt, "output": o.output} for o in outcomes
        ],
    }
