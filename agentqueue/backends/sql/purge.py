"""Retention on the SQL stores: delete old finished jobs (with everything of theirs) and old
events, a batch at a time.

Batches are picked oldest first from their indexes (`aq_jobs_finished`, `aq_job_events_at`)
and, on PostgreSQL, with SKIP LOCKED, so supervisors purging at once delete disjoint rows and
never wait for a job an operator is changing.

On SQLite, `aq_jobs` is a plain rowid table: a new job gets max(id) + 1, so deleting the job
with the highest id would give its id out again, and one id would name two jobs. There the
purge keeps the newest job whatever its age. (Adding AUTOINCREMENT means copying the table,
and dropping the old one would cascade to every tag and event. Events have AUTOINCREMENT since
migration 0005, as the feed's cursor is their id; PostgreSQL's sequences never repeat an id.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.base import PurgeResult
from agentqueue.backends.sql.dialect import SqlDialect
from agentqueue.backends.sql.tables import (
    IS_FINISHED,
    job_deps,
    job_events,
    job_steps,
    job_tags,
    jobs,
    token_tags,
    tokens,
)


def finished_probe(dialect: SqlDialect, before: datetime) -> sa.Select[Any]:
    """Select one id of a finished job the purge would delete (a cheap check before writing)."""
    return _old_finished(dialect, before).limit(1)


def events_probe(before: datetime) -> sa.Select[Any]:
    """Select one id of an event older than `before` (a cheap check before writing)."""
    return sa.select(job_events.c.id).where(job_events.c.at < before).limit(1)


def _old_finished(dialect: SqlDialect, before: datetime) -> sa.Select[Any]:
    query = (
        sa.select(jobs.c.id)
        .where(IS_FINISHED, jobs.c.completed_at < before)
        # Named: without statistics SQLite would pick the (status, id) index and sort.
        .with_hint(jobs, "INDEXED BY aq_jobs_finished", dialect_name="sqlite")
    )
    if dialect.reuses_job_ids:
        query = query.where(jobs.c.id < sa.select(sa.func.max(jobs.c.id)).scalar_subquery())
    return query


def purge(
    conn: sa.Connection,
    dialect: SqlDialect,
    *,
    finished_before: datetime | None,
    events_before: datetime | None,
    limit: int,
) -> PurgeResult:
    """Delete a batch of old finished jobs and a batch of old events; see `Backend.purge`.

    `events` counts the events deleted for their age, not those deleted with their job.
    """
    deleted_jobs = 0
    if finished_before is not None:
        deleted_jobs = _purge_jobs(conn, dialect, finished_before, limit)
    deleted_events = 0
    if events_before is not None:
        deleted_events = _purge_events(conn, dialect, events_before, limit)
    return PurgeResult(jobs=deleted_jobs, events=deleted_events)


def _purge_jobs(conn: sa.Connection, dialect: SqlDialect, before: datetime, limit: int) -> int:
    query = _old_finished(dialect, before).order_by(jobs.c.completed_at).limit(limit)
    return len(_delete(conn, dialect, list(conn.execute(dialect.lock(query)).scalars())))


def delete_finished(conn: sa.Connection, dialect: SqlDialect, ids: Sequence[int]) -> list[int]:
    """Delete those of `ids` that are finished, with everything of theirs; see
    `Backend.delete_jobs`."""
    query = sa.select(jobs.c.id).where(IS_FINISHED, jobs.c.id.in_(list(ids)))
    if dialect.reuses_job_ids:  # never the newest job (its id would be given out again)
        query = query.where(jobs.c.id < sa.select(sa.func.max(jobs.c.id)).scalar_subquery())
    found = list(conn.execute(dialect.lock_wait(query.order_by(jobs.c.id))).scalars())
    return _delete(conn, dialect, found)


def _delete(conn: sa.Connection, dialect: SqlDialect, ids: list[int]) -> list[int]:
    """Delete jobs the caller picked (and locked), with everything of theirs."""
    if not ids:
        return []
    dialect.delete_events(conn, job_events.c.job_id.in_(ids))
    # Explicit, though the foreign keys cascade: the purge does not depend on SQLite's
    # foreign_keys pragma being on.
    owned_tokens = sa.select(tokens.c.id).where(tokens.c.job_id.in_(ids))
    conn.execute(sa.delete(token_tags).where(token_tags.c.token_id.in_(owned_tokens)))
    conn.execute(sa.delete(tokens).where(tokens.c.job_id.in_(ids)))
    conn.execute(sa.delete(job_steps).where(job_steps.c.job_id.in_(ids)))
    conn.execute(sa.delete(job_tags).where(job_tags.c.job_id.in_(ids)))
    conn.execute(sa.delete(job_deps).where(job_deps.c.job_id.in_(ids)))
    conn.execute(sa.delete(jobs).where(jobs.c.id.in_(ids)))
    return ids


def _purge_events(conn: sa.Connection, dialect: SqlDialect, before: datetime, limit: int) -> int:
    query = sa.select(job_events.c.id).where(job_events.c.at < before)
    oldest = dialect.lock(query.order_by(job_events.c.at).limit(limit))
    return dialect.delete_events(conn, job_events.c.id.in_(oldest.scalar_subquery()))
