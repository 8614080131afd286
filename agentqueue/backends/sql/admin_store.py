"""The doors' half of `SqlBackend`: worker presence, API keys and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agentqueue.backends.sql.tables import api_keys, audit, workers
from agentqueue.backends.sql.transactions import Transactions
from agentqueue.errors import InvalidArgument
from agentqueue.models import ApiKey, AuditRecord, WorkerInfo

_KEY_COLUMNS = [c for c in api_keys.c if c.name != "secret_hash"]


def _values(row: sa.Row[Any]) -> dict[str, Any]:
    return dict(row._mapping)  # pyright: ignore[reportPrivateUsage]


_INSERT_AUDIT = audit.insert().returning(audit.c.id)


def insert_audit(conn: sa.Connection, record: AuditRecord) -> AuditRecord:
    """Write `record` in the transaction of `conn`; return it with its new id."""
    # One prepared statement with the values as parameters: compiled once, not per record.
    new_id = conn.execute(_INSERT_AUDIT, record.model_dump(exclude={"id"})).scalar_one()
    return record.model_copy(update={"id": new_id})


class AdminStore(Transactions):
    """Worker presence, API keys and audit records over SQL (a base of `SqlBackend`)."""

    # -- workers -----------------------------------------------------------------------------
    async def beat_worker(self, info: WorkerInfo, *, now: datetime | None = None) -> None:
        """See `Backend.beat_worker`."""

        def beat(conn: sa.Connection) -> None:
            values = info.model_dump() | {"last_seen_at": self._at(conn, now)}
            updated = conn.execute(
                sa.update(workers).where(workers.c.id == info.id).values(values)
            ).rowcount
            if not updated:
                conn.execute(workers.insert().values(values))

        # Presence is not work: a beat wakes no local waiter (on SQLite, other processes'
        # watchers see the commit; a spurious wake-up every beat is allowed).
        await self._write(beat, changed=_never)

    async def remove_worker(self, worker_id: str) -> None:
        """See `Backend.remove_worker`."""
        await self._write(
            lambda conn: conn.execute(sa.delete(workers).where(workers.c.id == worker_id)),
            changed=_never,
        )

    async def list_workers(self, *, seen_after: datetime | None = None) -> list[WorkerInfo]:
        """See `Backend.list_workers`."""
        query = sa.select(workers).order_by(workers.c.started_at, workers.c.id)
        if seen_after is not None:
            query = query.where(workers.c.last_seen_at > seen_after)
        return await self._read(
            lambda conn: [WorkerInfo.model_validate(_values(row)) for row in conn.execute(query)]
        )

    async def forget_workers(self, *, seen_before: datetime) -> int:
        """See `Backend.forget_workers`."""
        return await self._write(
            lambda conn: (
                conn.execute(
                    sa.delete(workers).where(workers.c.last_seen_at < seen_before)
                ).rowcount
            ),
            changed=_never,  # no job became claimable: wake no idle worker
        )

    # -- API keys ----------------------------------------------------------------------------
    async def put_api_key(self, key: ApiKey, secret_hash: str) -> None:
        """See `Backend.put_api_key`."""

        def put(conn: sa.Connection) -> None:
            active = conn.execute(
                sa.select(api_keys.c.id).where(
                    api_keys.c.name == key.name, api_keys.c.revoked_at.is_(None)
                )
            ).first()
            if active is not None:
                raise _name_taken(key.name)
            conn.execute(api_keys.insert().values(key.model_dump() | {"secret_hash": secret_hash}))

        # Two writers racing on one name: the unique index stops the second, whose transaction
        # reruns (PostgreSQL) and then finds the first's key.
        await self._write(put)

    async def find_api_key(self, secret_hash: str) -> ApiKey | None:
        """See `Backend.find_api_key`."""
        query = sa.select(*_KEY_COLUMNS).where(
            api_keys.c.secret_hash == secret_hash, api_keys.c.revoked_at.is_(None)
        )

        def read(conn: sa.Connection) -> ApiKey | None:
            row = conn.execute(query).first()
            return ApiKey.model_validate(_values(row)) if row is not None else None

        return await self._read(read)

    async def list_api_keys(self) -> list[ApiKey]:
        """See `Backend.list_api_keys`."""
        query = sa.select(*_KEY_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.id)
        return await self._read(
            lambda conn: [ApiKey.model_validate(_values(row)) for row in conn.execute(query)]
        )

    async def revoke_api_key(self, name: str, *, now: datetime | None = None) -> ApiKey | None:
        """See `Backend.revoke_api_key`."""

        def revoke(conn: sa.Connection) -> ApiKey | None:
            row = conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self._at(conn, now))
                .returning(*_KEY_COLUMNS)
            ).first()
            return ApiKey.model_validate(_values(row)) if row is not None else None

        return await self._write(revoke)

    # -- audit -------------------------------------------------------------------------------
    async def write_audit(self, record: AuditRecord) -> AuditRecord:
        """See `Backend.write_audit`."""
        return await self._write(lambda conn: insert_audit(conn, record))

    async def list_audit(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> list[AuditRecord]:
        """See `Backend.list_audit`."""
        query = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(audit.c.id < before_id)
        return await self._read(
            lambda conn: [AuditRecord.model_validate(_values(row)) for row in conn.execute(query)]
        )

    async def purge_audit(self, *, before: datetime, limit: int = 1000) -> int:
        """See `Backend.purge_audit`."""
        oldest = sa.select(audit.c.id).where(audit.c.at < before).order_by(audit.c.id).limit(limit)
        return await self._write(
            lambda conn: (
                conn.execute(
                    sa.delete(audit).where(audit.c.id.in_(oldest.scalar_subquery()))
                ).rowcount
            ),
            changed=_never,  # no job became claimable: wake no idle worker
        )


def _never(_result: object) -> bool:
    """`changed` of writes that never bring work: they wake no local waiter."""
    return False


def _name_taken(name: str) -> InvalidArgument:
    return InvalidArgument(
        f"an API key named {name!r} exists: revoke it first, or choose another name"
    )
