"""What differs between the SQL engines inside a transaction: row locks, the clock, the event
feed's order, conflict-free inserts and what deleting events must also clean up."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from agentqueue.backends.sql.tables import job_events
from agentqueue.errors import InvalidArgument


class SqlDialect:
    """SQLite's answers; PostgreSQL overrides them.

    SQLite has one writer at a time, so a row read inside a write transaction cannot change
    before the transaction writes: no row locks are needed, and the clock is the process's.
    """

    name = "sqlite"
    reuses_job_ids = True
    """A new job gets max(id) + 1 (aq_jobs has no AUTOINCREMENT): deleting the job with the
    highest id would hand that id out again."""

    def lock(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Lock the selected rows for the transaction, skipping rows others hold (claims)."""
        return query

    def lock_wait(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Lock the selected rows, waiting for other holders (an operator's change must not
        report a busy job as missing)."""
        return query

    def serialize_limited_claims(self, conn: sa.Connection) -> None:
        """Make claims under flow limits take turns (they count, then claim). SQLite's single
        writer already does."""

    def notify(self, conn: sa.Connection) -> None:
        """Wake this store's waiting workers at commit (a change that is not a job event).
        SQLite's watcher sees every commit."""

    def now(self, conn: sa.Connection, now: datetime | None) -> datetime:
        """Return `now`, or the store's clock when it is None."""
        return now if now is not None else datetime.now(UTC)

    def event_feed(self, after: str | None) -> sa.Select[Any]:
        """Select events after the cursor `after`, in feed order (add filters and a limit).

        SQLite has one writer, so ids grow in commit order and the cursor is the id.
        """
        query = sa.select(job_events)
        if after:
            if not after.isdigit():
                raise InvalidArgument(
                    f"bad event cursor {after!r}: pass the cursor of a received event"
                )
            query = query.where(job_events.c.id > int(after))
        return query.order_by(job_events.c.id)

    def cursor_of(self, row: sa.Row[Any]) -> str:
        """Return the feed cursor of an event row selected by `event_feed`."""
        return str(row.id)

    def latest_cursor(self, conn: sa.Connection) -> str | None:
        """Return the cursor of the newest event, or None."""
        latest = conn.execute(sa.select(sa.func.max(job_events.c.id))).scalar()
        return None if latest is None else str(latest)

    def time_bucket(self, column: sa.ColumnElement[Any], seconds: int) -> sa.ColumnElement[int]:
        """`floor(epoch seconds of column / seconds)`: SQLite stores epoch microseconds, so an
        integer division does it."""
        return sa.type_coerce(column, sa.BigInteger()) // (seconds * 1_000_000)

    def insert_ignoring_conflicts(self, table: sa.Table) -> sa.Insert:
        """`INSERT … ON CONFLICT DO NOTHING` on any unique constraint of `table`: a row that
        exists already is left as it is, with no check-then-insert race."""
        return sqlite.insert(table).on_conflict_do_nothing()

    def delete_events(self, conn: sa.Connection, where: sa.ColumnElement[bool]) -> int:
        """Delete the events matching `where`; return how many."""
        return conn.execute(sa.delete(job_events).where(where)).rowcount
