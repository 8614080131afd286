"""Flow control: groups, dead letters, idempotency windows, dependencies, limits, pauses."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from agentqueue.backends.sql.tables import IdType, JSONType, UTCDateTime

VERSION = 7
NAME = "job_flow_options"

_PROCESSING = sa.text("status = 'processing'")


def upgrade(op: Operations) -> None:
    """Add the job columns (all nullable or false: older jobs have none), `aq_job_deps`,
    `aq_limits`, `aq_rate_starts`, and the indexes the claim counts running jobs with."""
    # Plain ADD COLUMN (see m0005): a batch would copy aq_jobs on SQLite.
    op.add_column("aq_jobs", sa.Column("job_group", sa.String(200), nullable=True))
    op.add_column("aq_jobs", sa.Column("dead_letter", JSONType, nullable=True))
    op.add_column("aq_jobs", sa.Column("idempotency_expires_at", UTCDateTime(), nullable=True))
    op.add_column("aq_jobs", sa.Column("depends_on", JSONType, nullable=True))
    op.add_column(
        "aq_jobs",
        sa.Column("has_dependents", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "aq_jobs_running_group",
        "aq_jobs",
        ["job_group"],
        sqlite_where=_PROCESSING,
        postgresql_where=_PROCESSING,
    )
    op.create_index(
        "aq_jobs_running_type",
        "aq_jobs",
        ["job_type"],
        sqlite_where=_PROCESSING,
        postgresql_where=_PROCESSING,
    )
    op.create_table(
        "aq_job_deps",
        sa.Column(
            "job_id", IdType, sa.ForeignKey("aq_jobs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("depends_on_id", IdType, primary_key=True),
    )
    op.create_index("aq_job_deps_prerequisite", "aq_job_deps", ["depends_on_id", "job_id"])
    op.create_table(
        "aq_limits",
        sa.Column("scope", sa.String(20), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("rate_limit", sa.Integer(), nullable=True),
        sa.Column("rate_period", sa.Float(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "aq_rate_starts",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("aq_rate_starts_key", "aq_rate_starts", ["scope", "key", "at"])
