"""The SQL schema shared by SQLite and PostgreSQL (SQLAlchemy Core).

This module is the head of the schema; `migrations/` builds it step by step, and a test checks
that a migrated database matches these tables exactly.

Dialect differences are confined to column types: times are `timestamptz` on PostgreSQL and
integer epoch microseconds on SQLite (exact, compact, ordered as numbers); JSON is `jsonb` on
PostgreSQL; ids are SQLite rowid aliases (`AUTOINCREMENT` for events, whose ids must never
repeat once old ones are purged).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes: `timestamptz` on PostgreSQL, epoch microseconds on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        """Pick the column type per dialect."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.BigInteger())
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """Convert an aware datetime to the stored form."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware one")
        if dialect.name == "sqlite":
            return to_micros(value)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Convert the stored form back to an aware UTC datetime."""
        if value is None:
            return None
        if dialect.name == "sqlite":
            return from_micros(int(value))
        return value.astimezone(UTC)


def to_micros(value: datetime) -> int:
    """Return an aware datetime as integer microseconds since the epoch."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """Return epoch microseconds as an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=value)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

jobs = sa.Table(
    "aq_jobs",
    metadata,
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
    sa.Column("force_kill_on_timeout", sa.Boolean(), nullable=False, server_default=sa.false()),
    # The token a waiting job waits on (None: a durable sleep, or not waiting).
    sa.Column("waiting_for", sa.String(64), nullable=True),
    # `Job.group` ("group" is an SQL keyword).
    sa.Column("job_group", sa.String(200), nullable=True),
    # The dead-letter job to enqueue after the last failed attempt (`InsertJob.dead_letter`).
    sa.Column("dead_letter", JSONType, nullable=True),
    sa.Column("idempotency_expires_at", UTCDateTime(), nullable=True),
    # The ids this job runs after (`Job.depends_on`, written once at insert; NULL: none).
    sa.Column("depends_on", JSONType, nullable=True),
    # Set (never cleared) when a job that depends on this one is added: finishing this job
    # then settles its dependents, and PostgreSQL's one-statement completion leaves it to the
    # transactional path (see `flow.py`).
    sa.Column("has_dependents", sa.Boolean(), nullable=False, server_default=sa.false()),
    # Who asked for it through a door (`Job.origin`), and its actor for `created_by` filters.
    sa.Column("origin", JSONType, nullable=True),
    sa.Column("created_by", sa.String(200), nullable=True),
)

# The claim reads pending rows in priority order, with or without a queue; both orders are
# served by a partial index so the claim never sorts the backlog. A query only uses a partial
# index when it repeats its condition literally (a bound parameter does not match), hence
# `IS_PENDING` / `IS_PROCESSING` below.
_pending = sa.text("status = 'pending'")
sa.Index(
    "aq_jobs_claim_queue",
    jobs.c.queue,
    jobs.c.priority.desc(),
    jobs.c.run_at,
    jobs.c.id,
    sqlite_where=_pending,
    postgresql_where=_pending,
)
sa.Index(
    "aq_jobs_claim_any",
    jobs.c.priority.desc(),
    jobs.c.run_at,
    jobs.c.id,
    sqlite_where=_pending,
    postgresql_where=_pending,
)
sa.Index("aq_jobs_due", jobs.c.run_at, sqlite_where=_pending, postgresql_where=_pending)
_processing = sa.text("status = 'processing'")
sa.Index(
    "aq_jobs_lease",
    jobs.c.lease_expires_at,
    sqlite_where=_processing,
    postgresql_where=_processing,
)
sa.Index("aq_jobs_status", jobs.c.status, jobs.c.id)

# Processing jobs per group and per job type: the claim counts them against concurrency limits.
sa.Index(
    "aq_jobs_running_group",
    jobs.c.job_group,
    sqlite_where=_processing,
    postgresql_where=_processing,
)
sa.Index(
    "aq_jobs_running_type",
    jobs.c.job_type,
    sqlite_where=_processing,
    postgresql_where=_processing,
)

IS_PENDING = jobs.c.status == sa.literal_column("'pending'")
"""`status = 'pending'` as a literal, so the claim and next-due queries use the partial index."""
IS_PROCESSING = jobs.c.status == sa.literal_column("'processing'")
"""`status = 'processing'` as a literal, for the lease index."""

# Waiting jobs: by wake-up time (the supervisor's resume sweep) and by the token they wait on
# (completing or expiring a token resumes its waiters). Both hold only waiting rows, few.
_waiting = sa.text("status = 'waiting'")
sa.Index("aq_jobs_wake", jobs.c.run_at, sqlite_where=_waiting, postgresql_where=_waiting)
sa.Index(
    "aq_jobs_waiting_for", jobs.c.waiting_for, sqlite_where=_waiting, postgresql_where=_waiting
)
IS_WAITING = jobs.c.status == sa.literal_column("'waiting'")
"""`status = 'waiting'` as a literal, for the two waiting indexes."""

# Finished jobs by completion time: the purge deletes the oldest first.
_finished = sa.text("status IN ('completed', 'failed', 'cancelled')")
sa.Index(
    "aq_jobs_finished", jobs.c.completed_at, sqlite_where=_finished, postgresql_where=_finished
)
IS_FINISHED = jobs.c.status.in_(
    [sa.literal_column(f"'{status}'") for status in ("completed", "failed", "cancelled")]
)
"""`status IN ('completed', 'failed', 'cancelled')` as literals, for the purge index."""
sa.Index("aq_jobs_type", jobs.c.job_type, jobs.c.id)
_created_by = sa.text("created_by IS NOT NULL")
sa.Index(
    "aq_jobs_created_by",
    jobs.c.created_by,
    jobs.c.id,
    sqlite_where=_created_by,
    postgresql_where=_created_by,
)
_keyed = sa.text("idempotency_key IS NOT NULL")
sa.Index(
    "aq_jobs_idempotency",
    jobs.c.job_type,
    jobs.c.idempotency_key,
    unique=True,
    sqlite_where=_keyed,
    postgresql_where=_keyed,
)

job_tags = sa.Table(
    "aq_job_tags",
    metadata,
    sa.Column("job_id", IdType, sa.ForeignKey("aq_jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(200), primary_key=True),
)
sa.Index("aq_job_tags_tag", job_tags.c.tag, job_tags.c.job_id)

job_deps = sa.Table(
    "aq_job_deps",
    metadata,
    sa.Column("job_id", IdType, sa.ForeignKey("aq_jobs.id", ondelete="CASCADE"), primary_key=True),
    # No foreign key: a completed prerequisite may be purged while its dependent waits on others.
    sa.Column("depends_on_id", IdType, primary_key=True),
)
"""One row per (dependent, prerequisite) edge of `depends_on`."""
sa.Index("aq_job_deps_prerequisite", job_deps.c.depends_on_id, job_deps.c.job_id)

job_events = sa.Table(
    "aq_job_events",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("job_id", IdType, nullable=False),
    # The key exists on SQLite only. PostgreSQL dropped it in migration 0010: checking it there
    # is a trigger call and a row lock per event (10.6 of the 29 ms that 1,000 event inserts
    # take). Events are written with their job, in its transaction, and the purge deletes
    # them before their jobs: the key guarded nothing the code does not already keep.
    sa.ForeignKeyConstraint(["job_id"], ["aq_jobs.id"], ondelete="CASCADE").ddl_if(
        dialect="sqlite"
    ),
    sa.Column("job_type", sa.String(200), nullable=False),
    sa.Column("queue", sa.String(100), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("data", JSONType, nullable=False),
    # PostgreSQL: the writing transaction's id, joined to aq_event_commits for commit order.
    sa.Column("txid", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    # SQLite: never hand an id out twice, even after the purge deleted the newest events (a
    # rowid table gives max(id) + 1); the feed's cursor is the id.
    sqlite_autoincrement=True,
)
sa.Index("aq_job_events_job", job_events.c.job_id, job_events.c.id)
# The purge deletes events older than the retention, oldest first.
sa.Index("aq_job_events_at", job_events.c.at)
# Only PostgreSQL joins events to their commits; on SQLite txid is always 0.
sa.Index("aq_job_events_txid", job_events.c.txid, job_events.c.id).ddl_if(dialect="postgresql")

event_commits = sa.Table(
    "aq_event_commits",
    metadata,
    sa.Column("txid", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger(), nullable=True, unique=True),
)
sa.Index(
    "aq_event_commits_unnumbered",
    event_commits.c.txid,
    sqlite_where=sa.text("seq IS NULL"),
    postgresql_where=sa.text("seq IS NULL"),
)

job_steps = sa.Table(
    "aq_job_steps",
    metadata,
    sa.Column("job_id", IdType, sa.ForeignKey("aq_jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)
"""Memoized results of `ctx.step()`: a replayed handler reads them instead of redoing the step."""

tokens = sa.Table(
    "aq_tokens",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    # The job whose handler created the token, and the step it was created in (the memo key of
    # a replay); no foreign key: tokens made with `Queue.create_token` belong to no job.
    sa.Column("job_id", IdType, nullable=True),
    sa.Column("step", sa.String(200), nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("completed_at", UTCDateTime(), nullable=True),
    sa.Column("data", JSONType, nullable=True),
    sa.Column("tags", JSONType, nullable=False),
)
_owned = sa.text("job_id IS NOT NULL")
sa.Index(
    "aq_tokens_job_step",
    tokens.c.job_id,
    tokens.c.step,
    unique=True,
    sqlite_where=_owned,
    postgresql_where=_owned,
)
_token_pending = sa.text("status = 'pending'")
sa.Index(
    "aq_tokens_expiry",
    tokens.c.expires_at,
    sqlite_where=_token_pending,
    postgresql_where=_token_pending,
)
sa.Index("aq_tokens_created", tokens.c.created_at, tokens.c.id)
TOKEN_IS_PENDING = tokens.c.status == sa.literal_column("'pending'")
"""`status = 'pending'` on tokens as a literal, for the expiry index."""

token_tags = sa.Table(
    "aq_token_tags",
    metadata,
    sa.Column(
        "token_id",
        sa.String(64),
        sa.ForeignKey("aq_tokens.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("tag", sa.String(200), primary_key=True),
)
"""One row per token tag, so `list_tokens(tags=...)` is a join on both engines, not a JSON scan."""
sa.Index("aq_token_tags_tag", token_tags.c.tag, token_tags.c.token_id)

cron_jobs = sa.Table(
    "aq_cron_jobs",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("expression", sa.Text(), nullable=False),
    sa.Column("timezone", sa.String(100), nullable=False),
    sa.Column("job_type", sa.String(200), nullable=False),
    sa.Column("payload", JSONType, nullable=False),
    # The schedule's `JobOptions`, only the fields it set (mode json): loading gives the same
    # model, fields set included (the core applies handler defaults to the others).
    sa.Column("options", JSONType, nullable=False),
    sa.Column("allow_overlap", sa.Boolean(), nullable=False),
    sa.Column("dead_letter_job_type", sa.String(200), nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("next_run_at", UTCDateTime(), nullable=True),
    sa.Column("last_run_at", UTCDateTime(), nullable=True),
    # No foreign key: the purge deletes old jobs, the schedule keeps the id.
    sa.Column("last_job_id", IdType, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)
"""Cron schedules: the job to enqueue at each tick, and the next tick (`next_run_at`)."""
_cron_active = sa.text("status = 'active'")
sa.Index(
    "aq_cron_jobs_due",
    cron_jobs.c.next_run_at,
    sqlite_where=_cron_active,
    postgresql_where=_cron_active,
)
CRON_IS_ACTIVE = cron_jobs.c.status == sa.literal_column("'active'")
"""`status = 'active'` on schedules as a literal, for the due index."""

limits = sa.Table(
    "aq_limits",
    metadata,
    # `job_type` or `group`; `key` is the job type's or group's name, `*` for every group.
    sa.Column("scope", sa.String(20), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("max_concurrent", sa.Integer(), nullable=True),
    sa.Column("rate_limit", sa.Integer(), nullable=True),
    sa.Column("rate_period", sa.Float(), nullable=True),
    sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)
"""Flow limits: concurrency and rate limits per job type or group, and paused job types."""

rate_starts = sa.Table(
    "aq_rate_starts",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("scope", sa.String(20), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
)
"""One row per claim of a rate-limited job type or group, kept for one rate period."""
sa.Index("aq_rate_starts_key", rate_starts.c.scope, rate_starts.c.key, rate_starts.c.at)

workers = sa.Table(
    "aq_workers",
    metadata,
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
"""Worker processes by their last beat (`Backend.beat_worker`)."""

api_keys = sa.Table(
    "aq_api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("scope", sa.String(20), nullable=False),
    # SHA-256 of the whole key (high-entropy random secrets need no slow hash).
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
)
"""API keys of the REST and MCP doors; the secret itself is never stored."""
_key_active = sa.text("revoked_at IS NULL")
sa.Index(
    "aq_api_keys_active_name",
    api_keys.c.name,
    unique=True,
    sqlite_where=_key_active,
    postgresql_where=_key_active,
)

audit = sa.Table(
    "aq_audit",
    metadata,
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
"""Every mutating call through REST or MCP: who, what, on what, when, how it ended."""
sa.Index("aq_audit_at", audit.c.at)

job_types = sa.Table(
    "aq_job_types",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("queue", sa.String(100), nullable=False),
    sa.Column("payload_schema", JSONType, nullable=False),
    sa.Column("examples", JSONType, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("defaults", JSONType, nullable=False, server_default=sa.text("'{}'")),
)

schema_migrations = sa.Table(
    "aq_schema_migrations",
    metadata,
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", UTCDateTime(), nullable=False),
)
