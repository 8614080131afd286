"""Pending jobs by run_at (the worker's next-due query); no event txid index on SQLite."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

VERSION = 4
NAME = "due_index"

_PENDING = sa.text("status = 'pending'")


def upgrade(op: Operations) -> None:
    """Add `aq_jobs_due`; drop `aq_job_events_txid` where it is never used (SQLite)."""
    op.create_index(
        "aq_jobs_due", "aq_jobs", ["run_at"], sqlite_where=_PENDING, postgresql_where=_PENDING
    )
    if op.get_context().dialect.name != "postgresql":
        op.drop_index("aq_job_events_txid", table_name="aq_job_events")
