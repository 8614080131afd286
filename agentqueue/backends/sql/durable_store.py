"""The durable-execution half of `SqlBackend`: output, memoized steps, waits, tokens, purge.

Each method runs one transaction function of `durable.py`, `waiting.py`, `tokens.py` or
`purge.py` through the store's `_write` / `_read`, like the rest of `SqlBackend`; the
supervisor's sweeps read first so that one finding nothing never takes SQLite's write lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.base import Lease, PurgeResult, SuspendResult, TokenCompletion
from agentqueue.backends.sql import durable, purge, tokens, waiting
from agentqueue.backends.sql.rows import token_from_row
from agentqueue.backends.sql.transactions import Transactions
from agentqueue.models import Token, TokenStatus


class DurableStore(Transactions):
    """The durable-execution methods of the `Backend` protocol over SQL (a base of
    `SqlBackend`, which supplies the transactions and the clock)."""

    async def set_output(
        self, *, worker_id: str, lease: Lease, output: Any, now: datetime | None = None
    ) -> bool:
        """See `Backend.set_output`."""
        return await self._write(
            lambda conn: durable.set_output(
                conn,
                self.dialect,
                worker_id=worker_id,
                lease=lease,
                output=output,
                at=self._at(conn, now),
            )
        )

    async def load_steps(self, job_id: int) -> dict[str, Any]:
        """See `Backend.load_steps`."""
        query = durable.steps_statement(job_id)
        return await self._read(lambda conn: {row.name: row.value for row in conn.execute(query)})

    async def save_step(
        self,
        *,
        worker_id: str,
        lease: Lease,
        name: str,
        value: Any,
        now: datetime | None = None,
    ) -> bool:
        """See `Backend.save_step`."""
        return await self._write(
            lambda conn: durable.save_step(
                conn,
                self.dialect,
                worker_id=worker_id,
                lease=lease,
                name=name,
                value=value,
                at=self._at(conn, now),
            )
        )

    async def suspend(
        self,
        *,
        worker_id: str,
        lease: Lease,
        until: datetime,
        token_id: str | None = None,
        now: datetime | None = None,
    ) -> SuspendResult:
        """See `Backend.suspend`."""
        return await self._write(
            lambda conn: durable.suspend(
                conn,
                self.dialect,
                worker_id=worker_id,
                lease=lease,
                until=until,
                token_id=token_id,
                at=self._at(conn, now),
            )
        )

    async def resume_due(self, *, now: datetime | None = None, limit: int = 1000) -> list[int]:
        """See `Backend.resume_due`."""
        if limit <= 0:
            return []
        # A read first: a sweep that finds nothing must not take SQLite's write lock.
        found = await self._read(
            lambda conn: conn.execute(waiting.due_probe(self._at(conn, now))).first()
        )
        if found is None:
            return []
        return await self._write(
            lambda conn: waiting.resume_due(conn, self.dialect, self._at(conn, now), limit)
        )

    async def create_token(
        self,
        *,
        token_id: str,
        job_id: int | None,
        step: str | None,
        expires_at: datetime | None,
        tags: Sequence[str],
        now: datetime | None = None,
    ) -> Token:
        """See `Backend.create_token`."""
        return await self._write(
            lambda conn: tokens.create(
                conn,
                self.dialect,
                token_id=token_id,
                job_id=job_id,
                step=step,
                expires_at=expires_at,
                tags=tags,
                at=self._at(conn, now),
            )
        )

    async def complete_token(
        self, token_id: str, data: Any, *, now: datetime | None = None
    ) -> TokenCompletion:
        """See `Backend.complete_token`."""
        return await self._write(
            lambda conn: tokens.complete(conn, self.dialect, token_id, data, self._at(conn, now))
        )

    async def get_token(self, token_id: str) -> Token | None:
        """See `Backend.get_token`."""
        query = tokens.get_statement(token_id)

        def read(conn: sa.Connection) -> Token | None:
            row = conn.execute(query).first()
            return token_from_row(row) if row is not None else None

        return await self._read(read)

    async def list_tokens(
        self,
        *,
        status: Sequence[TokenStatus] | None = None,
        tags: Sequence[str] | None = None,
        job_id: int | None = None,
        limit: int = 100,
    ) -> list[Token]:
        """See `Backend.list_tokens`."""
        query = tokens.list_statement(status=status, tags=tags, job_id=job_id, limit=limit)
        return await self._read(lambda conn: [token_from_row(row) for row in conn.execute(query)])

    async def expire_tokens(self, *, now: datetime | None = None, limit: int = 1000) -> list[str]:
        """See `Backend.expire_tokens`."""
        if limit <= 0:
            return []
        found = await self._read(
            lambda conn: conn.execute(tokens.expiry_probe(self._at(conn, now))).first()
        )
        if found is None:
            return []
        return await self._write(
            lambda conn: tokens.expire_due(conn, self.dialect, self._at(conn, now), limit)
        )

    async def purge(
        self,
        *,
        finished_before: datetime | None,
        events_before: datetime | None,
        limit: int = 1000,
    ) -> PurgeResult:
        """See `Backend.purge`."""
        if limit <= 0:
            return PurgeResult()

        def probe(conn: sa.Connection) -> bool:
            probes = []
            if finished_before is not None:
                probes.append(purge.finished_probe(self.dialect, finished_before))
            if events_before is not None:
                probes.append(purge.events_probe(events_before))
            return any(conn.execute(query).first() is not None for query in probes)

        if not await self._read(probe):
            return PurgeResult()
        return await self._write(
            lambda conn: purge.purge(
                conn,
                self.dialect,
                finished_before=finished_before,
                events_before=events_before,
                limit=limit,
            )
        )

    async def delete_jobs(self, ids: Sequence[int]) -> list[int]:
        """See `Backend.delete_jobs`."""
        if not ids:
            return []
        return await self._write(lambda conn: purge.delete_finished(conn, self.dialect, ids))
