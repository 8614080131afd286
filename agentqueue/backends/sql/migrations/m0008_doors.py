"""The doors' tables: worker presence, API keys, the audit log, and who asked for each job."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from agentqueue.backends.sql.tables import IdType, JSONType, UTCDateTime

VERSION = 8
NAME = "doors"

_ACTIVE = sa.text("revoked_at IS NULL")
_CREATED_BY = sa.text("created_by IS NOT NULL")


def upgrade(op: Operations) -> None:
    """Add `aq_workers`, `aq_api_keys`, `aq_audit`, and `aq_jobs.origin` / `created_by`."""
    # Plain ADD COLUMN (see m0005): a batch would copy aq_jobs on SQLite.
    op.add_column("aq_jobs", sa.Column("origin", JSONType, nullable=True))
    op.add_column("aq_jobs", sa.Column("created_by", sa.String(200), nullable=True))
    op.create_index(
        "aq_jobs_created_by",
        "aq_jobs",
        ["created_by", "id"],
        sqlite_where=_CREATED_BY,
        postgresql_where=_CREATED_BY,
    )
    op.create_table(
        "aq_workers",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", JSONType, nullable=False),
        sa.Column("job_types", JSONType, nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "aq_api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "aq_api_keys_active_name",
        "aq_api_keys",
        ["name"],
        unique=True,
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )
    op.create_table(
        "aq_audit",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("door", sa.String(20), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.String(400), nullable=True),
        sa.Column("result", sa.String(60), nullable=False),
        sa.Column("details", JSONType, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("aq_audit_at", "aq_audit", ["at"])
