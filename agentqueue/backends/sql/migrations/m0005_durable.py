"""Durable execution: waiting jobs, memoized steps, human-in-the-loop tokens, purge indexes."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from agentqueue.backends.sql.tables import IdType, JSONType, UTCDateTime

VERSION = 5
NAME = "durable"

_WAITING = sa.text("status = 'waiting'")
_FINISHED = sa.text("status IN ('completed', 'failed', 'cancelled')")
_OWNED = sa.text("job_id IS NOT NULL")
_TOKEN_PENDING = sa.text("status = 'pending'")


def upgrade(op: Operations) -> None:
    """Add the job columns and indexes, `aq_job_steps`, `aq_tokens` and `aq_token_tags`."""
    # Plain ADD COLUMN, not a batch: on SQLite a batch with an expression default copies the
    # table, and dropping the old aq_jobs would cascade to its tags and events (and rebuild the
    # claim indexes without their DESC). Old rows get false: enqueued before the option existed.
    op.add_column(
        "aq_jobs",
        sa.Column("force_kill_on_timeout", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("aq_jobs", sa.Column("waiting_for", sa.String(64), nullable=True))
    op.create_index(
        "aq_jobs_wake", "aq_jobs", ["run_at"], sqlite_where=_WAITING, postgresql_where=_WAITING
    )
    op.create_index(
        "aq_jobs_waiting_for",
        "aq_jobs",
        ["waiting_for"],
        sqlite_where=_WAITING,
        postgresql_where=_WAITING,
    )
    op.create_index(
        "aq_jobs_finished",
        "aq_jobs",
        ["completed_at"],
        sqlite_where=_FINISHED,
        postgresql_where=_FINISHED,
    )
    if op.get_context().dialect.name == "sqlite":
        # AUTOINCREMENT, so event ids are never handed out twice once the purge deletes the
        # newest events (SQLite's feed cursor is the id). Copying this table is safe: no
        # table references it.
        with op.batch_alter_table(
            "aq_job_events", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
    op.create_index("aq_job_events_at", "aq_job_events", ["at"])
    op.create_table(
        "aq_job_steps",
        sa.Column(
            "job_id", IdType, sa.ForeignKey("aq_jobs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("value", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "aq_tokens",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("job_id", IdType, nullable=True),
        sa.Column("step", sa.String(200), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("data", JSONType, nullable=True),
        sa.Column("tags", JSONType, nullable=False),
    )
    op.create_index(
        "aq_tokens_job_step",
        "aq_tokens",
        ["job_id", "step"],
        unique=True,
        sqlite_where=_OWNED,
        postgresql_where=_OWNED,
    )
    op.create_index(
        "aq_tokens_expiry",
        "aq_tokens",
        ["expires_at"],
        sqlite_where=_TOKEN_PENDING,
        postgresql_where=_TOKEN_PENDING,
    )
    op.create_index("aq_tokens_created", "aq_tokens", ["created_at", "id"])
    op.create_table(
        "aq_token_tags",
        sa.Column(
            "token_id",
            sa.String(64),
            sa.ForeignKey("aq_tokens.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(200), primary_key=True),
    )
    op.create_index("aq_token_tags_tag", "aq_token_tags", ["tag", "token_id"])
