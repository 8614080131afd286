"""The cron half of `SqlBackend`: store, read and remove schedules, find due ones, fire a tick.

Each method runs one transaction function or statement of `cron.py` through the store's
`_write` / `_read`, like the rest of `SqlBackend`; finding due schedules is a read, so a pass
with nothing due never takes SQLite's write lock.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from agentqueue.backends.base import CronFire, InsertJob
from agentqueue.backends.sql import cron as cron_sql
from agentqueue.backends.sql.transactions import Transactions
from agentqueue.models import CronJob, CronStatus


class CronStore(Transactions):
    """The cron methods of the `Backend` protocol over SQL (a base of `SqlBackend`, which
    supplies the transactions and the clock)."""

    async def put_cron_job(
        self,
        cron: CronJob,  # the protocol's parameter name (the module is imported as cron_sql)
        *,
        now: datetime | None = None,
    ) -> CronJob:
        """See `Backend.put_cron_job`."""
        return await self._write(lambda conn: cron_sql.put(conn, cron, self._at(conn, now)))

    async def get_cron_job(self, name: str) -> CronJob | None:
        """See `Backend.get_cron_job`."""
        query = cron_sql.get_statement(name)

        def read(conn: sa.Connection) -> CronJob | None:
            row = conn.execute(query).first()
            return cron_sql.cron_from_row(row) if row is not None else None

        return await self._read(read)

    async def list_cron_jobs(self, *, status: CronStatus | None = None) -> list[CronJob]:
        """See `Backend.list_cron_jobs`."""
        query = cron_sql.list_statement(status)
        return await self._read(
            lambda conn: [cron_sql.cron_from_row(row) for row in conn.execute(query)]
        )

    async def remove_cron_job(self, name: str) -> bool:
        """See `Backend.remove_cron_job`."""
        return await self._write(lambda conn: cron_sql.remove(conn, name))

    async def due_cron_jobs(
        self, *, now: datetime | None = None, limit: int = 100
    ) -> list[CronJob]:
        """See `Backend.due_cron_jobs`."""
        if limit <= 0:
            return []
        return await self._read(
            lambda conn: [
                cron_sql.cron_from_row(row)
                for row in conn.execute(cron_sql.due_statement(self._at(conn, now), limit))
            ]
        )

    async def store_now(self) -> datetime:
        """See `Backend.store_now` (no statement: the dialect's clock, whose PostgreSQL offset
        is refreshed on a connection when it is due)."""
        return await self._read(lambda conn: self._at(conn, None))

    async def fire_cron(
        self,
        *,
        name: str,
        tick: datetime,
        next_run_at: datetime | None,
        job: InsertJob,
        now: datetime | None = None,
    ) -> CronFire:
        """See `Backend.fire_cron`: one transaction (`cron_sql.fire`)."""
        return await self._write(
            lambda conn: cron_sql.fire(
                conn,
                name=name,
                tick=tick,
                next_run_at=next_run_at,
                job=job,
                at=self._at(conn, now),
            )
        )
