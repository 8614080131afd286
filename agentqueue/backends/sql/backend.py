"""`SqlBackend`: the `Backend` protocol over SQLAlchemy Core, shared by SQLite and PostgreSQL.

A dialect subclass supplies the engine, how a write transaction starts (SQLite: `BEGIN
IMMEDIATE`), how rows are locked for update (PostgreSQL: `FOR UPDATE SKIP LOCKED`), the store's
clock and how changes are signalled across processes. Everything else is written once here.

Each write method reads the rows it will change inside its write transaction and then applies
executemany updates: under SQLite's single writer (or PostgreSQL's row locks) what it read cannot
change before it writes, so every fence check is race-free.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentqueue.backends.base import (
    Capabilities,
    HeartbeatResult,
    InsertJob,
    InsertResult,
    Lease,
    Outcome,
)
from agentqueue.backends.sql import migrations, operate
from agentqueue.backends.sql.consume import apply_outcomes, claim_statement
from agentqueue.backends.sql.rows import (
    JOB_COLUMNS,
    event_from_row,
    event_row,
    insert_events,
    job_from_row,
    job_type_from_row,
)
from agentqueue.backends.sql.tables import job_events, job_tags, job_types, jobs
from agentqueue.errors import BackendUnavailable
from agentqueue.models import (
    ErrorRecord,
    EventType,
    FailureReason,
    Job,
    JobEdit,
    JobEvent,
    JobFilter,
    JobTypeInfo,
    ListOrder,
    QueueStats,
)
from agentqueue.states import JobStatus

logger = logging.getLogger(__name__)


class SqlBackend(ABC):
    """Shared implementation of the SQL stores; see the module docstring."""

    capabilities = Capabilities()

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._write_engine = engine

    # -- dialect hooks -----------------------------------------------------------------------
    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """Yield a connection inside a write transaction; commit on success."""
        try:
            async with self._write_engine.begin() as conn:
                yield conn
        except sa_exc.DBAPIError as error:
            raise self._translate(error) from error
        self._after_commit()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """Yield a connection for reads."""
        try:
            async with self.engine.connect() as conn:
                yield conn
        except sa_exc.DBAPIError as error:
            raise self._translate(error) from error

    def _after_commit(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Wake in-process waiters after a write committed."""

    def _lock(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Lock the selected rows for the rest of the write transaction, skipping locked ones."""
        return query

    def _lock_wait(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Lock the selected rows, waiting for other holders (an operator's change must not
        report a busy job as missing)."""
        return query

    async def _now(self, conn: AsyncConnection, now: datetime | None) -> datetime:
        """Return `now`, or the store's clock when it is None."""
        return now if now is not None else datetime.now(UTC)

    def _translate(self, error: sa_exc.DBAPIError) -> Exception:
        """Turn a driver error into the project's own."""
        return BackendUnavailable(f"{self.engine.dialect.name} error: {error.orig}")

    @abstractmethod
    def change_token(self) -> int:
        """See `Backend.change_token`; each dialect has its own wake-up path."""

    @abstractmethod
    async def wait_for_change(self, timeout: float, since: int | None = None) -> bool:
        """See `Backend.wait_for_change`; each dialect has its own wake-up path."""

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self, *, migrate: bool = False) -> None:
        """See `Backend.open`."""
        if migrate:
            await self.migrate()
        else:
            async with self._read() as conn:
                await conn.run_sync(migrations.check)

    async def close(self) -> None:
        """See `Backend.close`."""
        await self.engine.dispose()

    async def migrate(self) -> list[str]:
        """See `Backend.migrate`."""
        async with self._write() as conn:
            now = await self._now(conn, None)
            return await conn.run_sync(migrations.apply, now)

    # -- produce -----------------------------------------------------------------------------
    async def insert_jobs(
        self, new_jobs: Sequence[InsertJob], *, now: datetime | None = None
    ) -> list[InsertResult]:
        """See `Backend.insert_jobs`."""
        if not new_jobs:
            return []
        async with self._write() as conn:
            at = await self._now(conn, now)
            existing = await self._existing_keys(conn, new_jobs)
            results: list[InsertResult] = []
            fresh: list[InsertJob] = []
            first_of: dict[tuple[str, str], int] = {}  # key -> index in `fresh`
            pending: list[tuple[int, int]] = []  # (index in results, index in fresh)
            for job in new_jobs:
                key = (job.job_type, job.idempotency_key or "")
                if job.idempotency_key is not None and key in existing:
                    results.append(InsertResult(existing[key], created=False))
                elif job.idempotency_key is not None and key in first_of:
                    pending.append((len(results), first_of[key]))
                    results.append(InsertResult(0, created=False))
                else:
                    if job.idempotency_key is not None:
                        first_of[key] = len(fresh)
                    pending.append((len(results), len(fresh)))
                    results.append(InsertResult(0, created=True))
                    fresh.append(job)
            if fresh:
                rows = [self._job_values(job, at) for job in fresh]
                inserted = await conn.execute(
                    jobs.insert().returning(jobs.c.id, sort_by_parameter_order=True), rows
                )
                ids = [row.id for row in inserted]
                for slot, fresh_index in pending:
                    results[slot] = InsertResult(ids[fresh_index], results[slot].created)
                tag_rows = [
                    {"job_id": job_id, "tag": tag}
                    for job, job_id in zip(fresh, ids, strict=True)
                    for tag in job.tags
                ]
                if tag_rows:
                    await conn.execute(job_tags.insert(), tag_rows)
                await insert_events(
                    conn,
                    [
                        event_row({"id": job_id, **row}, EventType.ADDED, JobStatus.PENDING, at)
                        for row, job_id in zip(rows, ids, strict=True)
                    ],
                )
            return results

    async def _existing_keys(
        self, conn: AsyncConnection, new_jobs: Sequence[InsertJob]
    ) -> dict[tuple[str, str], int]:
        keys = {(j.job_type, j.idempotency_key) for j in new_jobs if j.idempotency_key is not None}
        if not keys:
            return {}
        query = sa.select(jobs.c.id, jobs.c.job_type, jobs.c.idempotency_key).where(
            sa.tuple_(jobs.c.job_type, jobs.c.idempotency_key).in_(list(keys))
        )
        found = await conn.execute(query)
        return {(row.job_type, row.idempotency_key): row.id for row in found}

    @staticmethod
    def _job_values(job: InsertJob, at: datetime) -> dict[str, Any]:
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
        }

    # -- consume -----------------------------------------------------------------------------
    async def claim(
        self,
        *,
        worker_id: str,
        queue: str | None,
        job_types: Sequence[str] | None,
        limit: int,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> list[Job]:
        """See `Backend.claim`."""
        if limit <= 0:
            return []
        # A read first: an idle claimer must not take the write lock just to find nothing.
        async with self._read() as conn:
            at = await self._now(conn, now)
            probe = claim_statement(queue, job_types, 1, at).with_only_columns(jobs.c.id)
            if (await conn.execute(probe)).first() is None:
                return []
        async with self._write() as conn:
            at = await self._now(conn, now)
            due = self._lock(claim_statement(queue, job_types, limit, at))
            claimed = await conn.execute(
                sa.update(jobs)
                .where(jobs.c.id.in_(due.scalar_subquery()))
                .values(
                    status=JobStatus.PROCESSING.value,
                    attempts=jobs.c.attempts + 1,
                    locked_by=worker_id,
                    lease_expires_at=at + timedelta(seconds=lease_seconds),
                    started_at=at,
                    updated_at=at,
                    cancel_requested=False,
                )
                .returning(*JOB_COLUMNS)
            )
            found = [job_from_row(row) for row in claimed]
            found.sort(key=lambda job: (-job.priority, job.run_at, job.id))
            await insert_events(
                conn,
                [
                    event_row(
                        job.model_dump(),
                        EventType.CLAIM,
                        JobStatus.PROCESSING,
                        at,
                        {"attempt": job.attempts, "worker": worker_id},
                    )
                    for job in found
                ],
            )
            return found

    async def heartbeat(
        self,
        *,
        worker_id: str,
        leases: Sequence[Lease],
        lease_seconds: float,
        now: datetime | None = None,
    ) -> HeartbeatResult:
        """See `Backend.heartbeat`."""
        if not leases:
            return HeartbeatResult()
        async with self._write() as conn:
            at = await self._now(conn, now)
            owned = await self._owned(conn, worker_id, leases)
            if owned:
                await conn.execute(
                    sa.update(jobs)
                    .where(jobs.c.id.in_(list(owned)))
                    .values(lease_expires_at=at + timedelta(seconds=lease_seconds))
                )
            return HeartbeatResult(
                lost={lease.job_id for lease in leases if lease.job_id not in owned},
                cancel_requested={job_id for job_id, row in owned.items() if row.cancel_requested},
            )

    async def _owned(
        self, conn: AsyncConnection, worker_id: str, leases: Sequence[Lease]
    ) -> dict[int, sa.Row[Any]]:
        """Return the rows (locked) still held by `worker_id` under the leased attempt."""
        attempt = {lease.job_id: lease.attempt for lease in leases}
        query = self._lock(
            sa.select(*JOB_COLUMNS).where(
                jobs.c.id.in_(list(attempt)),
                jobs.c.status == JobStatus.PROCESSING.value,
                jobs.c.locked_by == worker_id,
            )
        )
        rows = await conn.execute(query)
        return {row.id: row for row in rows if attempt[row.id] == row.attempts}

    async def finish(
        self, *, worker_id: str, outcomes: Sequence[Outcome], now: datetime | None = None
    ) -> set[int]:
        """See `Backend.finish`."""
        if not outcomes:
            return set()
        async with self._write() as conn:
            at = await self._now(conn, now)
            owned = await self._owned(conn, worker_id, [o.lease for o in outcomes])
            kept = [o for o in outcomes if o.lease.job_id in owned]
            await apply_outcomes(conn, kept, owned, at)
            return {o.lease.job_id for o in outcomes if o.lease.job_id not in owned}

    async def set_progress(
        self,
        *,
        worker_id: str,
        lease: Lease,
        progress: int,
        message: str | None,
        now: datetime | None = None,
    ) -> bool:
        """See `Backend.set_progress`."""
        async with self._write() as conn:
            at = await self._now(conn, now)
            owned = await self._owned(conn, worker_id, [lease])
            row = owned.get(lease.job_id)
            if row is None:
                return False
            await conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == lease.job_id)
                .values(progress=progress, progress_message=message, updated_at=at)
            )
            await insert_events(
                conn,
                [
                    event_row(
                        row._mapping,  # pyright: ignore[reportPrivateUsage]
                        EventType.PROGRESS,
                        JobStatus.PROCESSING,
                        at,
                        {"progress": progress, "message": message},
                    )
                ],
            )
            return True

    async def next_due(
        self, *, queue: str | None, job_types: Sequence[str] | None
    ) -> datetime | None:
        """See `Backend.next_due`."""
        query = sa.select(sa.func.min(jobs.c.run_at)).where(
            jobs.c.status == JobStatus.PENDING.value
        )
        if queue is not None:
            query = query.where(jobs.c.queue == queue)
        if job_types:
            query = query.where(jobs.c.job_type.in_(list(job_types)))
        async with self._read() as conn:
            return (await conn.execute(query)).scalar()

    # -- operate -----------------------------------------------------------------------------
    async def get_job(self, job_id: int) -> Job | None:
        """See `Backend.get_job`."""
        async with self._read() as conn:
            row = (await conn.execute(sa.select(*JOB_COLUMNS).where(jobs.c.id == job_id))).first()
        return job_from_row(row) if row is not None else None

    async def list_jobs(
        self, filter: JobFilter, *, limit: int, after_id: int | None, order: ListOrder
    ) -> list[Job]:
        """See `Backend.list_jobs`."""
        query = operate.list_statement(filter, limit=limit, after_id=after_id, order=order)
        async with self._read() as conn:
            return [job_from_row(row) for row in await conn.execute(query)]

    async def cancel_job(self, job_id: int, *, now: datetime | None = None) -> Job:
        """See `Backend.cancel_job`."""
        async with self._write() as conn:
            at = await self._now(conn, now)
            row = await operate.locked_job(conn, self._lock_wait, job_id)
            return await operate.cancel(conn, row, at)

    async def retry_job(self, job_id: int, *, now: datetime | None = None) -> Job:
        """See `Backend.retry_job`."""
        async with self._write() as conn:
            at = await self._now(conn, now)
            row = await operate.locked_job(conn, self._lock_wait, job_id)
            return await operate.retry(conn, row, at)

    async def edit_job(self, job_id: int, edit: JobEdit, *, now: datetime | None = None) -> Job:
        """See `Backend.edit_job`."""
        async with self._write() as conn:
            at = await self._now(conn, now)
            row = await operate.locked_job(conn, self._lock_wait, job_id)
            return await operate.edit(conn, row, edit, at)

    async def stats(self) -> QueueStats:
        """See `Backend.stats`."""
        query = sa.select(jobs.c.job_type, jobs.c.status, sa.func.count()).group_by(
            jobs.c.job_type, jobs.c.status
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return operate.stats_from_counts([(r[0], r[1], r[2]) for r in rows])

    # -- maintain ----------------------------------------------------------------------------
    async def rescue_expired(self, *, now: datetime | None = None) -> list[int]:
        """See `Backend.rescue_expired`."""
        async with self._read() as conn:
            at = await self._now(conn, now)
            probe = sa.select(jobs.c.id).where(
                jobs.c.status == JobStatus.PROCESSING.value, jobs.c.lease_expires_at < at
            )
            if (await conn.execute(probe.limit(1))).first() is None:
                return []
        async with self._write() as conn:
            at = await self._now(conn, now)
            query = self._lock(
                sa.select(*JOB_COLUMNS).where(
                    jobs.c.status == JobStatus.PROCESSING.value, jobs.c.lease_expires_at < at
                )
            )
            rows = {row.id: row for row in await conn.execute(query)}
            outcomes = [
                Outcome(
                    kind=operate.rescue_kind(row),
                    lease=Lease(row.id, row.attempts),
                    error=ErrorRecord(
                        attempt=row.attempts,
                        at=at,
                        reason=FailureReason.LEASE_EXPIRED,
                        message=f"lease expired on worker {row.locked_by} "
                        "(crashed, killed or stalled)",
                    ),
                )
                for row in rows.values()
            ]
            await apply_outcomes(conn, outcomes, rows, at, event=EventType.RESCUE)
            if rows:
                logger.warning("rescued %d job(s) with expired leases: %s", len(rows), list(rows))
            return sorted(rows)

    # -- events ------------------------------------------------------------------------------
    async def job_events(self, job_id: int) -> list[JobEvent]:
        """See `Backend.job_events`."""
        query = sa.select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
        async with self._read() as conn:
            return [event_from_row(row) for row in await conn.execute(query)]

    async def read_events(
        self,
        *,
        after_id: int,
        limit: int,
        job_id: int | None = None,
        job_types: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
    ) -> list[JobEvent]:
        """See `Backend.read_events`."""
        query = sa.select(job_events).where(job_events.c.id > after_id)
        if job_id is not None:
            query = query.where(job_events.c.job_id == job_id)
        if job_types:
            query = query.where(job_events.c.job_type.in_(list(job_types)))
        if queues:
            query = query.where(job_events.c.queue.in_(list(queues)))
        query = query.order_by(job_events.c.id).limit(limit)
        async with self._read() as conn:
            return [event_from_row(row) for row in await conn.execute(query)]

    async def last_event_id(self) -> int:
        """See `Backend.last_event_id`."""
        async with self._read() as conn:
            value = (await conn.execute(sa.select(sa.func.max(job_events.c.id)))).scalar()
        return int(value or 0)

    # -- registry ----------------------------------------------------------------------------
    async def publish_job_types(
        self, types: Sequence[JobTypeInfo], *, now: datetime | None = None
    ) -> None:
        """See `Backend.publish_job_types`."""
        if not types:
            return
        async with self._write() as conn:
            at = await self._now(conn, now)
            names = [t.name for t in types]
            await conn.execute(sa.delete(job_types).where(job_types.c.name.in_(names)))
            await conn.execute(
                job_types.insert(),
                [
                    {
                        "name": t.name,
                        "description": t.description,
                        "queue": t.queue,
                        "payload_schema": t.payload_schema,
                        "examples": t.examples,
                        "updated_at": at,
                    }
                    for t in types
                ],
            )

    async def list_job_types(self) -> list[JobTypeInfo]:
        """See `Backend.list_job_types`."""
        async with self._read() as conn:
            rows = await conn.execute(sa.select(job_types).order_by(job_types.c.name))
            return [job_type_from_row(row) for row in rows]
