"""Enqueue on the SQL stores: one transaction per batch, idempotency keys honoured."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from agentqueue.backends.base import InsertJob, InsertResult
from agentqueue.backends.sql import flow
from agentqueue.backends.sql.rows import event_row, insert_events
from agentqueue.backends.sql.tables import UTCDateTime, job_events, job_tags, jobs, to_micros
from agentqueue.backends.stored import new_job_times
from agentqueue.models import EventType
from agentqueue.states import JobStatus


def insert(
    conn: sa.Connection,
    new_jobs: Sequence[InsertJob],
    at: datetime,
    *,
    lock: flow.Lock = flow.no_lock,
) -> list[InsertResult]:
    """Insert jobs (inside the caller's write transaction); see `Backend.insert_jobs`.

    Keys are checked and inserted in one write transaction; the unique index on
    (job_type, idempotency_key) backs this up against any other writer. `lock` is the store's
    waiting row lock (`SqlDialect.lock_wait`), taken on the prerequisites of `depends_on`.

    Raises:
        DependencyInvalid: a prerequisite does not exist, failed or was cancelled.
    """
    existing = _existing_keys(conn, new_jobs, at)
    results: list[InsertResult] = []
    fresh: list[InsertJob] = []
    first_of: dict[tuple[str, str], int] = {}  # key -> index in `fresh`
    slots: list[tuple[int, int]] = []  # (index in results, index in fresh)
    fresh_of: dict[int, int] = {}  # index in new_jobs -> index in fresh
    for index, job in enumerate(new_jobs):
        key = (job.job_type, job.idempotency_key or "")
        if job.idempotency_key is not None and key in existing:
            results.append(InsertResult(existing[key], created=False))
        elif job.idempotency_key is not None and key in first_of:
            slots.append((len(results), first_of[key]))
            fresh_of[index] = first_of[key]
            results.append(InsertResult(0, created=False))
        else:
            if job.idempotency_key is not None:
                first_of[key] = len(fresh)
            slots.append((len(results), len(fresh)))
            fresh_of[index] = len(fresh)
            results.append(InsertResult(0, created=True))
            fresh.append(job)
    if not fresh:
        return results
    plan = _DependencyPlan(conn, lock, new_jobs, results, fresh_of) if _has_deps(fresh) else None
    rows = [job_values(job, at) for job in fresh]
    if plan is not None:
        for fresh_index, row in enumerate(rows):
            if plan.blocked(fresh_index):
                row["status"] = JobStatus.BLOCKED.value
            if fresh_index in plan.batch_prerequisites:
                row["has_dependents"] = True
    ids = _insert_rows(conn, rows)
    for slot, fresh_index in slots:
        created = results[slot].created
        results[slot] = InsertResult(ids[fresh_index], created, at if created else None)
    if plan is not None:
        flow.write_edges(conn, plan.edges(ids))
    tag_rows = [
        {"job_id": job_id, "tag": tag}
        for job, job_id in zip(fresh, ids, strict=True)
        for tag in job.tags
    ]
    if tag_rows:
        conn.execute(job_tags.insert(), tag_rows)
    if conn.dialect.name == "sqlite":
        micros = to_micros(at)
        conn.exec_driver_sql(
            _SQLITE_EVENTS,
            [
                (job_id, row["job_type"], row["queue"], _ADDED, row["status"], micros, "{}")
                for row, job_id in zip(rows, ids, strict=True)
            ],
        )
    else:
        insert_events(
            conn,
            [
                event_row({"id": job_id, **row}, EventType.ADDED, JobStatus(row["status"]), at)
                for row, job_id in zip(rows, ids, strict=True)
            ],
        )
    return results


def _insert_rows(conn: sa.Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert `aq_jobs` rows; return their ids in input order."""
    if conn.dialect.name != "sqlite":
        inserted = conn.execute(
            jobs.insert().returning(jobs.c.id, sort_by_parameter_order=True), rows
        )
        return [row.id for row in inserted]
    # SQLite cannot promise RETURNING's order in a multi-row insert, so SQLAlchemy inserts such
    # rows one statement at a time, with its type processing per value: most of a batch's
    # time. One executemany of plain tuples instead; in this write transaction (the only
    # writer) each new rowid is the previous one plus one, so the ids end at the last rowid.
    insert = _sqlite_insert(rows[0])
    if len(rows) == 1:  # a single add: its rowid comes back with the statement
        return [conn.exec_driver_sql(insert.sql, insert.values(rows[0])).lastrowid]
    before = conn.exec_driver_sql("SELECT max(id) FROM aq_jobs").scalar() or 0
    conn.exec_driver_sql(insert.sql, [insert.values(row) for row in rows])
    last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
    first = last - len(rows) + 1
    if first <= before:  # rowids past the largest one are chosen at random: never here
        raise RuntimeError("SQLite gave the new jobs ids that do not follow each other")
    return list(range(first, last + 1))


class _SqliteInsert:
    """The raw SQLite insert of `aq_jobs` rows with the columns `job_values` gives, and what
    SQLAlchemy's types make of each value there: JSON text (None as JSON null, as `sa.JSON`
    stores it) and epoch microseconds."""

    def __init__(self, names: Sequence[str]) -> None:
        compiled = jobs.insert().compile(dialect=sqlite.dialect(), column_keys=list(names))
        self.sql = str(compiled)
        self.converters: list[tuple[str, Any]] = []
        for name in compiled.positiontup or ():  # the table's column order
            kind = jobs.c[name].type
            if isinstance(kind, UTCDateTime):
                self.converters.append((name, _micros))
            elif isinstance(kind, sa.JSON):
                self.converters.append((name, _json))
            else:
                self.converters.append((name, None))

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """The statement's parameters for one row."""
        return tuple(
            row[name] if convert is None else convert(row[name])
            for name, convert in self.converters
        )


def _json(value: Any) -> str:
    # Most of a new job's JSON columns are None or empty: no encoder call for them.
    if value is None:
        return "null"
    if value == [] and type(value) is list:
        return "[]"
    return json.dumps(value)


def _micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; pass an aware one")
    return to_micros(value)


_SQLITE_INSERTS: dict[tuple[str, ...], _SqliteInsert] = {}
"""By the row's column names (always those of `job_values`): built once."""


def _sqlite_insert(row: dict[str, Any]) -> _SqliteInsert:
    names = tuple(row)
    insert = _SQLITE_INSERTS.get(names)
    if insert is None:
        insert = _SQLITE_INSERTS[names] = _SqliteInsert(names)
    return insert


_SQLITE_EVENTS = str(
    job_events.insert().compile(
        dialect=sqlite.dialect(),
        column_keys=["job_id", "job_type", "queue", "type", "status", "at", "data"],
    )
)
_ADDED = EventType.ADDED.value


def _has_deps(fresh: Sequence[InsertJob]) -> bool:
    return any(job.depends_on or job.depends_on_batch or job.depends_on_tags for job in fresh)


class _DependencyPlan:
    """The prerequisites of one batch's new jobs: existing jobs (locked and checked) and
    earlier new jobs of the same batch, by index in `fresh`."""

    def __init__(
        self,
        conn: sa.Connection,
        lock: flow.Lock,
        new_jobs: Sequence[InsertJob],
        results: Sequence[InsertResult],
        fresh_of: dict[int, int],
    ) -> None:
        self.existing: dict[int, set[int]] = {}  # fresh index -> ids of existing jobs
        self.batch: dict[int, set[int]] = {}  # fresh index -> fresh indexes
        drained: dict[str, list[int]] = {}  # tag -> fresh indexes of earlier new jobs with it
        tagged = {tag: flow.tag_prerequisites(conn, [tag]) for tag in _drain_tags(new_jobs)}
        for index, job in enumerate(new_jobs):
            mine = fresh_of.get(index)
            # An in-batch duplicate of a key is the first job with it: its options count.
            if mine is not None and results[index].created:
                outside = self.existing.setdefault(mine, set(job.depends_on))
                inside = self.batch.setdefault(mine, set())
                for earlier in job.depends_on_batch:
                    if earlier in fresh_of:
                        inside.add(fresh_of[earlier])
                    else:  # its idempotency key named an existing job
                        outside.add(results[earlier].id)
                for tag in job.depends_on_tags:
                    outside.update(tagged[tag])
                    inside.update(drained.get(tag, ()))
                inside.discard(mine)
            if mine is not None:
                for tag in job.tags:
                    drained.setdefault(tag, []).append(mine)
        self.statuses = flow.lock_prerequisites(
            conn, lock, {job_id for ids in self.existing.values() for job_id in ids}
        )
        self.batch_prerequisites = {i for indexes in self.batch.values() for i in indexes}

    def blocked(self, fresh_index: int) -> bool:
        """Whether the new job waits on a prerequisite that has not completed."""
        return bool(self.batch.get(fresh_index)) or any(
            self.statuses[job_id] != JobStatus.COMPLETED.value
            for job_id in self.existing.get(fresh_index, ())
        )

    def edges(self, ids: Sequence[int]) -> dict[int, list[int]]:
        """Each new dependent's prerequisites by id, once the batch's ids are known."""
        edges: dict[int, list[int]] = {}
        for fresh_index, outside in self.existing.items():
            prerequisites = outside | {ids[i] for i in self.batch.get(fresh_index, ())}
            if prerequisites:
                edges[ids[fresh_index]] = sorted(prerequisites)
        return edges


def _drain_tags(new_jobs: Sequence[InsertJob]) -> set[str]:
    return {tag for job in new_jobs for tag in job.depends_on_tags}


def _existing_keys(
    conn: sa.Connection, new_jobs: Sequence[InsertJob], at: datetime
) -> dict[tuple[str, str], int]:
    """Return the ids of the jobs that hold the batch's keys now.

    A key whose window ended (`idempotency_expires_at` passed) is taken from its old job here
    (the old job's key is cleared), so the batch can give it to a new job: the unique index
    allows one holder per (job type, key).
    """
    keys = {(j.job_type, j.idempotency_key) for j in new_jobs if j.idempotency_key is not None}
    if not keys:
        return {}
    query = sa.select(
        jobs.c.id, jobs.c.job_type, jobs.c.idempotency_key, jobs.c.idempotency_expires_at
    ).where(sa.tuple_(jobs.c.job_type, jobs.c.idempotency_key).in_(list(keys)))
    held: dict[tuple[str, str], int] = {}
    expired: list[int] = []
    for row in conn.execute(query):
        if row.idempotency_expires_at is not None and row.idempotency_expires_at <= at:
            expired.append(row.id)
        else:
            held[(row.job_type, row.idempotency_key)] = row.id
    if expired:
        # A concurrent writer that cleared the same key first makes this a no-op; its new job
        # then collides on the unique index and the transaction reruns on fresh state.
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id.in_(expired), jobs.c.idempotency_key.is_not(None))
            .values(idempotency_key=None, idempotency_expires_at=None)
        )
    return held


def job_values(job: InsertJob, at: datetime) -> dict[str, Any]:
    """Return the `aq_jobs` column values of a new job created at `at`."""
    run_at, idempotency_expires_at = new_job_times(job, at)
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
        # Columns with server defaults too, so every row of a batch names the same columns
        # (SQLite's executemany binds exactly these keys).
        "force_kill_on_timeout": job.force_kill_on_timeout,
        "waiting_for": None,
        "job_group": job.group,
        "dead_letter": job.dead_letter,
        "depends_on": None,  # written with the edges once the batch's ids are known
        "has_dependents": False,
        "origin": job.origin,
        "created_by": job.origin["actor"] if job.origin else None,
        "idempotency_expires_at": idempotency_expires_at,
    }
