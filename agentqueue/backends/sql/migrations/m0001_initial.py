"""Initial schema: jobs, tags, events, job-type registry."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from agentqueue.backends.sql.tables import IdType, JSONType, UTCDateTime

VERSION = 1
NAME = "initial"

_PENDING = sa.text("status = 'pending'")
_PROCESSING = sa.text("status = 'processing'")
_KEYED = sa.text("idempotency_key IS NOT NULL")


def upgrade(op: Operations) -> None:
    """Create the first version of every table and index."""
    op.create_table(
        "aq_jobs",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("job_type", sa.String(200), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("run_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_by", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.String(40), nullable=True),
        sa.Column("error_history", JSONType, nullable=False),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("idempotency_key", sa.String(400), nullable=True),
        sa.Column("timeout", sa.Float(), nullable=True),
        sa.Column("retry_delay", sa.Float(), nullable=False),
        sa.Column("retry_backoff", sa.Boolean(), nullable=False),
        sa.Column("retry_delay_max", sa.Float(), nullable=True),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("progress_message", sa.Text(), nullable=True),
        sa.Column("output", JSONType, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
    )
    op.create_index(
        "aq_jobs_claim_queue",
        "aq_jobs",
        ["queue", sa.text("priority DESC"), "run_at", "id"],
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )
    op.create_index(
        "aq_jobs_claim_any",
        "aq_jobs",
        [sa.text("priority DESC"), "run_at", "id"],
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )
    op.create_index(
        "aq_jobs_lease",
        "aq_jobs",
        ["lease_expires_at"],
        sqlite_where=_PROCESSING,
        postgresql_where=_PROCESSING,
    )
    op.create_index("aq_jobs_status", "aq_jobs", ["status", "id"])
    op.create_index("aq_jobs_type", "aq_jobs", ["job_type", "id"])
    op.create_index(
        "aq_jobs_idempotency",
        "aq_jobs",
        ["job_type", "idempotency_key"],
        unique=True,
        sqlite_where=_KEYED,
        postgresql_where=_KEYED,
    )
    op.create_table(
        "aq_job_tags",
        sa.Column(
            "job_id", IdType, sa.ForeignKey("aq_jobs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("tag", sa.String(200), primary_key=True),
    )
    op.create_index("aq_job_tags_tag", "aq_job_tags", ["tag", "job_id"])
    op.create_table(
        "aq_job_events",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column(
            "job_id", IdType, sa.ForeignKey("aq_jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("job_type", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("data", JSONType, nullable=False),
    )
    op.create_index("aq_job_events_job", "aq_job_events", ["job_id", "id"])
    op.create_table(
        "aq_job_types",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("payload_schema", JSONType, nullable=False),
        sa.Column("examples", JSONType, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
