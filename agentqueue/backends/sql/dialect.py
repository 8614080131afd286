"""What differs between the SQL engines inside a transaction: row locks and the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa


class SqlDialect:
    """SQLite's answers; PostgreSQL overrides them.

    SQLite has one writer at a time, so a row read inside a write transaction cannot change
    before the transaction writes: no row locks are needed, and the clock is the process's.
    """

    name = "sqlite"

    def lock(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Lock the selected rows for the transaction, skipping rows others hold (claims)."""
        return query

    def lock_wait(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Lock the selected rows, waiting for other holders (an operator's change must not
        report a busy job as missing)."""
        return query

    def now(self, conn: sa.Connection, now: datetime | None) -> datetime:
        """Return `now`, or the store's clock when it is None."""
        return now if now is not None else datetime.now(UTC)
