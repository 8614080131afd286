"""Cron schedules on the SQL stores: store and read schedules, fire one tick exactly once.

A schedule row holds its definition and its next tick (`next_run_at`). Firing a tick is one
transaction that starts with a conditional update: "still active, and `next_run_at` is still
this tick". Its row count decides the winner. On SQLite writers take turns; on PostgreSQL
(READ COMMITTED) a concurrent firer blocks on the winner's row lock, then re-checks the
condition against the committed row, whose `next_run_at` has moved on: it updates nothing and
loses. Only the winner reads the previous job (overlap) and inserts the tick's job through the
ordinary insert (`produce.insert`: its `added` event, and on PostgreSQL the NOTIFY of the event
trigger, wake the workers); a job that already holds the tick's idempotency key (a replayed
tick) is returned instead of a new one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.base import CronFire, InsertJob
from agentqueue.backends.sql import produce
from agentqueue.backends.sql.tables import CRON_IS_ACTIVE, cron_jobs, jobs
from agentqueue.models import CronJob, CronStatus
from agentqueue.states import JobStatus

ACTIVE_JOB_STATUSES = (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.WAITING)
"""A previous job in one of these still runs (or will): a tick without overlap is skipped."""

CRON_COLUMNS = tuple(cron_jobs.c)


def cron_from_row(row: sa.Row[Any]) -> CronJob:
    """Build a `CronJob` from a full `aq_cron_jobs` row."""
    return CronJob.model_validate(dict(row._mapping))  # pyright: ignore[reportPrivateUsage]


def _definition(cron: CronJob) -> dict[str, Any]:
    """The columns `put_cron_job` replaces: the definition, the status and the next tick."""
    return {
        "expression": cron.expression,
        "timezone": cron.timezone,
        "job_type": cron.job_type,
        "payload": cron.payload,
        # Only the fields the schedule set: loading them back gives an equal model with the
        # same `model_fields_set` (the core applies handler defaults to the fields not set).
        "options": cron.options.model_dump(mode="json", exclude_unset=True),
        "allow_overlap": cron.allow_overlap,
        "dead_letter_job_type": cron.dead_letter_job_type,
        "status": CronStatus(cron.status).value,
        "next_run_at": cron.next_run_at,
    }


def put(conn: sa.Connection, cron: CronJob, at: datetime) -> CronJob:
    """Insert or replace a schedule; see `Backend.put_cron_job`.

    A replaced schedule keeps its `last_run_at`, `last_job_id` and `created_at`; a new one
    takes them from `cron` (`created_at` None: `at`). Two writers inserting one new name at
    once: the second hits the primary key, and PostgreSQL's store reruns its transaction,
    which then replaces.
    """
    definition = _definition(cron)
    replaced = conn.execute(
        sa.update(cron_jobs)
        .where(cron_jobs.c.name == cron.name)
        .values(**definition, updated_at=at)
        .returning(*CRON_COLUMNS)
    ).first()
    if replaced is not None:
        return cron_from_row(replaced)
    inserted = conn.execute(
        sa.insert(cron_jobs)
        .values(
            name=cron.name,
            **definition,
            last_run_at=cron.last_run_at,
            last_job_id=cron.last_job_id,
            created_at=cron.created_at or at,
            updated_at=at,
        )
        .returning(*CRON_COLUMNS)
    ).one()
    return cron_from_row(inserted)


def get_statement(name: str) -> sa.Select[Any]:
    """Select one schedule by name."""
    return sa.select(*CRON_COLUMNS).where(cron_jobs.c.name == name)


def list_statement(status: CronStatus | None) -> sa.Select[Any]:
    """Select schedules by name, all or those of one status."""
    query = sa.select(*CRON_COLUMNS).order_by(cron_jobs.c.name)
    if status is not None:
        query = query.where(cron_jobs.c.status == CronStatus(status).value)
    return query


def remove(conn: sa.Connection, name: str) -> bool:
    """Delete a schedule (its jobs stay); False if there was none."""
    return conn.execute(sa.delete(cron_jobs).where(cron_jobs.c.name == name)).rowcount > 0


def due_statement(at: datetime, limit: int) -> sa.Select[Any]:
    """Select active schedules whose next tick is at or before `at`, earliest first."""
    return (
        sa.select(*CRON_COLUMNS)
        .where(CRON_IS_ACTIVE, cron_jobs.c.next_run_at <= at)
        .order_by(cron_jobs.c.next_run_at, cron_jobs.c.name)
        .limit(limit)
        # Without statistics SQLite would read the whole table by its primary key.
        .with_hint(cron_jobs, "INDEXED BY aq_cron_jobs_due", dialect_name="sqlite")
    )


def fire(
    conn: sa.Connection,
    *,
    name: str,
    tick: datetime,
    next_run_at: datetime | None,
    job: InsertJob,
    at: datetime,
) -> CronFire:
    """Fire one tick of a schedule; see `Backend.fire_cron` and the module docstring."""
    won = conn.execute(
        sa.update(cron_jobs)
        .where(cron_jobs.c.name == name, CRON_IS_ACTIVE, cron_jobs.c.next_run_at == tick)
        .values(next_run_at=next_run_at, last_run_at=tick, updated_at=at)
        .returning(cron_jobs.c.allow_overlap, cron_jobs.c.last_job_id)
    ).first()
    if won is None:
        return CronFire(won=False)
    if not won.allow_overlap and won.last_job_id is not None and _runs(conn, won.last_job_id):
        return CronFire(won=True, skipped_overlap=True)
    (inserted,) = produce.insert(conn, [job], at)
    conn.execute(
        sa.update(cron_jobs).where(cron_jobs.c.name == name).values(last_job_id=inserted.id)
    )
    return CronFire(won=True, job_id=inserted.id)


def _runs(conn: sa.Connection, job_id: int) -> bool:
    """Whether the job is still pending, processing or waiting (a purged job is not)."""
    query = sa.select(jobs.c.id).where(
        jobs.c.id == job_id, jobs.c.status.in_([status.value for status in ACTIVE_JOB_STATUSES])
    )
    return conn.execute(query).first() is not None
