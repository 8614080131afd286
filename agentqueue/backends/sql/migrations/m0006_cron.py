"""Cron schedules: `aq_cron_jobs` and its index of due active schedules."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from agentqueue.backends.sql.tables import IdType, JSONType, UTCDateTime

VERSION = 6
NAME = "cron"

_ACTIVE = sa.text("status = 'active'")


def upgrade(op: Operations) -> None:
    """Add `aq_cron_jobs` and `aq_cron_jobs_due` (a new table: no existing row is touched)."""
    op.create_table(
        "aq_cron_jobs",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("timezone", sa.String(100), nullable=False),
        sa.Column("job_type", sa.String(200), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("options", JSONType, nullable=False),
        sa.Column("allow_overlap", sa.Boolean(), nullable=False),
        sa.Column("dead_letter_job_type", sa.String(200), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("next_run_at", UTCDateTime(), nullable=True),
        sa.Column("last_run_at", UTCDateTime(), nullable=True),
        sa.Column("last_job_id", IdType, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "aq_cron_jobs_due",
        "aq_cron_jobs",
        ["next_run_at"],
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )
