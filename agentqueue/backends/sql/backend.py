"""`SqlBackend`: the `Backend` protocol over SQLAlchemy Core, shared by SQLite and PostgreSQL.

Every operation is a plain (synchronous) function of one SQLAlchemy `Connection` in
`produce.py`, `consume.py` and `operate.py`, run as one transaction by `_write` or `_read`; the
durable-execution operations are in `durable_store.py` and the cron operations in
`cron_store.py` (base classes), over the same two.
A store subclass decides how a transaction runs: SQLite runs it on a dedicated writer thread
(one thread hop per transaction instead of one per statement); an async driver can run the same
function through `AsyncConnection.run_sync`. `SqlDialect` supplies the row locks and the clock.

Each write function reads the rows it will change inside its transaction and then updates them:
under SQLite's single writer (or PostgreSQL's row locks) what it read cannot change before it
writes, so every fence check is race-free.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from agentqueue.backends.base import (
    Capabilities,
    HeartbeatResult,
    InsertJob,
    InsertResult,
    Lease,
    Outcome,
)
from agentqueue.backends.signal import ChangeSignal
from agentqueue.backends.sql import consume, limits, migrations, operate, produce
from agentqueue.backends.sql.admin_store import AdminStore, insert_audit
from agentqueue.backends.sql.cron_store import CronStore
from agentqueue.backends.sql.dialect import SqlDialect
from agentqueue.backends.sql.durable_store import DurableStore
from agentqueue.backends.sql.rows import event_from_row, job_from_row, job_type_from_row
from agentqueue.backends.sql.tables import IS_FINISHED, IS_PENDING, job_events, job_types, jobs
from agentqueue.backends.sql.tables import limits as limits_table
from agentqueue.backends.sql.transactions import T, Work
from agentqueue.errors import BackendUnavailable, InvalidArgument
from agentqueue.models import (
    AuditRecord,
    Job,
    JobEdit,
    JobEvent,
    JobFilter,
    JobTypeInfo,
    Limit,
    LimitScope,
    ListOrder,
    QueueStats,
)
from agentqueue.states import JobStatus


class SqlBackend(DurableStore, CronStore, AdminStore, ABC):
    """Shared implementation of the SQL stores; see the module docstring."""

    capabilities = Capabilities()
    dialect = SqlDialect()
    _signal: ChangeSignal
    """Each store's wake-up signal (set by its `__init__`)."""

    # -- per store ---------------------------------------------------------------------------
    @abstractmethod
    async def close(self) -> None:
        """See `Backend.close`."""

    @abstractmethod
    def change_token(self) -> int:
        """See `Backend.change_token`."""

    @abstractmethod
    async def wait_for_change(self, timeout: float, since: int | None = None) -> bool:
        """See `Backend.wait_for_change`."""

    def ring_on_change(self, bell: asyncio.Future[None], since: int) -> Callable[[], None]:
        """See `RingsOnChange.ring_on_change` (`since`: a `change_token`)."""
        return self._signal.ring_on_change(bell, since)

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self, *, migrate: bool = False) -> None:
        """See `Backend.open`."""
        if migrate:
            await self.migrate()
        else:
            await self._read(migrations.check)

    async def migrate(self) -> list[str]:
        """See `Backend.migrate`."""
        return await self._write(lambda conn: migrations.apply(conn, self._at(conn, None)))

    # -- produce -----------------------------------------------------------------------------
    async def insert_jobs(
        self,
        new_jobs: Sequence[InsertJob],
        *,
        now: datetime | None = None,
        connection: Any = None,
        audit: Callable[[list[InsertResult]], AuditRecord] | None = None,
    ) -> list[InsertResult]:
        """See `Backend.insert_jobs`."""
        if not new_jobs:
            return []

        def work(conn: sa.Connection) -> list[InsertResult]:
            at = self._at(conn, now)
            results = produce.insert(conn, new_jobs, at, lock=self.dialect.lock_wait)
            if audit is not None:
                insert_audit(conn, audit(results))
            return results

        if connection is not None:
            return await self._run_in(connection, work)
        return await self._write(work)

    async def _run_in(self, connection: Any, work: Work[T]) -> T:
        """Run `work` on the caller's own connection, inside the caller's transaction.

        Takes a SQLAlchemy `AsyncConnection` or a sync `Connection` on this store's database;
        the caller commits or rolls back. Stores add other connection kinds by overriding.
        """
        if not self.capabilities.transactional_enqueue:
            raise InvalidArgument(f"the {self.dialect.name} store has no transactional enqueue")
        try:
            if isinstance(connection, AsyncConnection):
                return await connection.run_sync(work)
            if isinstance(connection, sa.Connection):
                return work(connection)
        except sa_exc.DBAPIError as error:
            raise BackendUnavailable(f"{self.dialect.name} error: {error.orig}") from error
        raise InvalidArgument(
            "connection must be a SQLAlchemy AsyncConnection or Connection, "
            f"not {type(connection).__name__}"
        )

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
        def probe(conn: sa.Connection) -> bool:
            return consume.any_due(conn, queue, job_types, self._at(conn, now))

        probed = self._probe_before_claim()
        if probed and not await self._read(probe):
            self._claimed(probed=True, found=False)
            return []
        # An empty claim (the due jobs are held by flow limits) wakes no one: see `_write`.
        jobs = await self._write_claim(
            lambda conn: consume.claim(
                conn,
                self.dialect,
                worker_id=worker_id,
                queue=queue,
                job_types=job_types,
                limit=limit,
                lease_seconds=lease_seconds,
                at=self._at(conn, now),
            )
        )
        self._claimed(probed=probed, found=bool(jobs))
        return jobs

    def _probe_before_claim(self) -> bool:
        """Whether `claim` reads first (a store that knows a claim will likely find work, say
        right after another process's commit, skips the read's round trip)."""
        return True

    def _claimed(self, *, probed: bool, found: bool) -> None:
        """Told after each claim whether it read first and whether it found work."""

    async def _write_claim(self, work: Work[list[Job]]) -> list[Job]:
        """Run a claim's write transaction (waking local waiters only when it claimed).

        A claim lost in a crash costs only a rerun: its jobs are pending again, and a
        completion of the lost attempt is refused by the fence. So a store may commit claims
        without waiting for the disk (SQLite, PostgreSQL); enqueues and outcomes always wait.
        """
        return await self._write(work, changed=bool)

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
        return await self._write(
            lambda conn: consume.heartbeat(
                conn,
                self.dialect,
                worker_id=worker_id,
                leases=leases,
                lease_seconds=lease_seconds,
                at=self._at(conn, now),
            )
        )

    async def finish(
        self, *, worker_id: str, outcomes: Sequence[Outcome], now: datetime | None = None
    ) -> set[int]:
        """See `Backend.finish`."""
        if not outcomes:
            return set()
        return await self._write(
            lambda conn: consume.finish(
                conn, self.dialect, worker_id=worker_id, outcomes=outcomes, at=self._at(conn, now)
            )
        )

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
        return await self._write(
            lambda conn: consume.set_progress(
                conn,
                self.dialect,
                worker_id=worker_id,
                lease=lease,
                progress=progress,
                message=message,
                at=self._at(conn, now),
            )
        )

    async def next_due(
        self,
        *,
        queue: str | None,
        job_types: Sequence[str] | None,
        now: datetime | None = None,
    ) -> datetime | None:
        """See `Backend.next_due`."""
        query = (
            sa.select(sa.func.min(jobs.c.run_at))
            .where(IS_PENDING)
            .with_hint(jobs, "INDEXED BY aq_jobs_due", dialect_name="sqlite")
        )
        if queue is not None:
            query = query.where(jobs.c.queue == queue)
        if job_types:
            query = query.where(jobs.c.job_type.in_(list(job_types)))
        if not await self._limits_may_exist():
            return await self._read(lambda conn: conn.execute(query).scalar())

        def read(conn: sa.Connection) -> datetime | None:
            limit_set = limits.load(conn)
            if limit_set is None:
                return conn.execute(query).scalar()
            at = self._at(conn, now)
            return limits.next_due(conn, limit_set, queue=queue, job_types=job_types, at=at)

        return await self._read(read)

    async def _limits_may_exist(self) -> bool:
        """Whether reads must look at `aq_limits` (SQLite: always; it costs one lookup)."""
        return True

    # -- flow limits -------------------------------------------------------------------------
    async def update_limit(
        self,
        scope: LimitScope,
        key: str,
        changes: dict[str, Any],
        *,
        now: datetime | None = None,
    ) -> Limit | None:
        """See `Backend.update_limit`."""

        def update(conn: sa.Connection) -> Limit | None:
            at = self._at(conn, now)
            stored = limits.update(conn, self.dialect.lock_wait, scope, key, changes, at)
            self.dialect.notify(conn)  # a resumed or raised limit may let waiting jobs run
            return stored

        return await self._write(update)

    async def list_limits(self) -> list[Limit]:
        """See `Backend.list_limits`."""
        query = sa.select(limits_table).order_by(limits_table.c.scope, limits_table.c.key)
        return await self._read(
            lambda conn: [limits.limit_from_row(row) for row in conn.execute(query)]
        )

    async def remove_limit(self, scope: LimitScope, key: str) -> bool:
        """See `Backend.remove_limit`."""

        def remove(conn: sa.Connection) -> bool:
            removed = limits.remove(conn, scope, key)
            self.dialect.notify(conn)
            return removed

        return await self._write(remove)

    # -- operate -----------------------------------------------------------------------------
    async def get_job(self, job_id: int) -> Job | None:
        """See `Backend.get_job`."""
        query = sa.select(*jobs.c).where(jobs.c.id == job_id)

        def read(conn: sa.Connection) -> Job | None:
            row = conn.execute(query).first()
            return job_from_row(row) if row is not None else None

        return await self._read(read)

    async def list_jobs(
        self, filter: JobFilter, *, limit: int, after_id: int | None, order: ListOrder
    ) -> list[Job]:
        """See `Backend.list_jobs`."""
        query = operate.list_statement(filter, limit=limit, after_id=after_id, order=order)
        return await self._read(lambda conn: [job_from_row(row) for row in conn.execute(query)])

    async def cancel_job(self, job_id: int, *, now: datetime | None = None) -> Job:
        """See `Backend.cancel_job`."""
        lock = self.dialect.lock_wait
        return await self._write(
            lambda conn: self._change(
                conn, job_id, now, lambda c, row, at: operate.cancel(c, row, at, lock=lock)
            )
        )

    async def retry_job(self, job_id: int, *, now: datetime | None = None) -> Job:
        """See `Backend.retry_job`."""
        return await self._write(lambda conn: self._change(conn, job_id, now, operate.retry))

    async def edit_job(self, job_id: int, edit: JobEdit, *, now: datetime | None = None) -> Job:
        """See `Backend.edit_job`."""
        return await self._write(
            lambda conn: self._change(
                conn, job_id, now, lambda c, row, at: operate.edit(c, row, edit, at)
            )
        )

    def _change(
        self,
        conn: sa.Connection,
        job_id: int,
        now: datetime | None,
        change: Callable[[sa.Connection, sa.Row[Any], datetime], Job],
    ) -> Job:
        row = operate.locked_job(conn, self.dialect.lock_wait, job_id)
        return change(conn, row, self._at(conn, now))

    async def stats(self) -> QueueStats:
        """See `Backend.stats`."""
        query = sa.select(jobs.c.job_type, jobs.c.status, sa.func.count()).group_by(
            jobs.c.job_type, jobs.c.status
        )
        rows = await self._read(lambda conn: conn.execute(query).all())
        return operate.stats_from_counts([(r[0], r[1], r[2]) for r in rows])

    async def finished_counts(
        self, *, since: datetime, bucket_seconds: int
    ) -> list[tuple[int, JobStatus, int]]:
        """See `Backend.finished_counts`: a range scan of `aq_jobs_finished` (its partial
        index's condition, as literals, lets both engines use it), grouped in the store."""
        bucket = self.dialect.time_bucket(jobs.c.completed_at, bucket_seconds).label("bucket")
        query = (
            sa.select(bucket, jobs.c.status, sa.func.count())
            .where(IS_FINISHED, jobs.c.completed_at >= since)
            .group_by(bucket, jobs.c.status)
        )
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [(int(r[0]), JobStatus(r[1]), int(r[2])) for r in rows]

    # -- maintain ----------------------------------------------------------------------------
    async def rescue_expired(self, *, now: datetime | None = None) -> list[int]:
        """See `Backend.rescue_expired`."""
        found = await self._read(
            lambda conn: conn.execute(consume.expired_probe(self._at(conn, now))).first()
        )
        if found is None:
            return []
        return await self._write(
            lambda conn: consume.rescue(conn, self.dialect, self._at(conn, now))
        )

    # -- events ------------------------------------------------------------------------------
    async def job_events(self, job_id: int) -> list[JobEvent]:
        """See `Backend.job_events`."""
        query = self.dialect.event_feed(None).where(job_events.c.job_id == job_id)
        return await self._read(lambda conn: self._events(conn, query))

    async def read_events(
        self,
        *,
        after: str | None,
        limit: int,
        job_id: int | None = None,
        job_types: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
    ) -> list[JobEvent]:
        """See `Backend.read_events`."""
        query = self.dialect.event_feed(after)
        if job_id is not None:
            query = query.where(job_events.c.job_id == job_id)
        if job_types:
            query = query.where(job_events.c.job_type.in_(list(job_types)))
        if queues:
            query = query.where(job_events.c.queue.in_(list(queues)))
        query = query.limit(limit)
        return await self._read(lambda conn: self._events(conn, query))

    def _events(self, conn: sa.Connection, query: sa.Select[Any]) -> list[JobEvent]:
        return [event_from_row(row, self.dialect.cursor_of(row)) for row in conn.execute(query)]

    async def latest_event_cursor(self) -> str | None:
        """See `Backend.latest_event_cursor`."""
        return await self._read(self.dialect.latest_cursor)

    # -- registry ----------------------------------------------------------------------------
    async def publish_job_types(
        self, types: Sequence[JobTypeInfo], *, now: datetime | None = None
    ) -> None:
        """See `Backend.publish_job_types`."""
        if not types:
            return

        def publish(conn: sa.Connection) -> None:
            at = self._at(conn, now)
            conn.execute(sa.delete(job_types).where(job_types.c.name.in_([t.name for t in types])))
            conn.execute(
                job_types.insert(),
                [
                    {
                        "name": t.name,
                        "description": t.description,
                        "queue": t.queue,
                        "payload_schema": t.payload_schema,
                        "defaults": t.defaults.model_dump(mode="json", exclude_none=True),
                        "examples": t.examples,
                        "updated_at": at,
                    }
                    for t in types
                ],
            )

        await self._write(publish)

    async def list_job_types(self) -> list[JobTypeInfo]:
        """See `Backend.list_job_types`."""
        query = sa.select(job_types).order_by(job_types.c.name)
        return await self._read(lambda conn: [job_type_from_row(r) for r in conn.execute(query)])
