"""Numbered schema migrations for the SQL stores, applied in order and recorded in a table.

Each migration is a module with `VERSION`, `NAME` and `upgrade(op)`, written with Alembic's
dialect-neutral operations so one file serves SQLite and PostgreSQL. The runner is ours (no
alembic.ini, no env.py): it records applied versions in `aq_schema_migrations` and refuses a
database that is newer than the code.
"""

from __future__ import annotations

import logging
from datetime import datetime
from types import ModuleType

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from agentqueue.backends.sql import tables
from agentqueue.backends.sql.migrations import (
    m0001_initial,
    m0002_job_type_defaults,
    m0003_event_commits,
    m0004_due_index,
    m0005_durable,
    m0006_cron,
    m0007_job_flow_options,
    m0008_doors,
    m0009_static_commit_trigger,
    m0010_events_without_job_key,
)
from agentqueue.errors import SchemaMismatch

# Alembic announces its context at INFO on every run; our runner reports what it applied itself.
for _name in ("alembic.runtime.migration", "alembic.runtime.plugins"):
    logging.getLogger(_name).setLevel(logging.WARNING)

MIGRATIONS: list[ModuleType] = [
    m0001_initial,
    m0002_job_type_defaults,
    m0003_event_commits,
    m0004_due_index,
    m0005_durable,
    m0006_cron,
    m0007_job_flow_options,
    m0008_doors,
    m0009_static_commit_trigger,
    m0010_events_without_job_key,
]
LATEST = MIGRATIONS[-1].VERSION


def current_version(conn: sa.Connection) -> int:
    """Return the highest applied version (0 for an empty database)."""
    if not sa.inspect(conn).has_table(tables.schema_migrations.name):
        return 0
    found = conn.execute(sa.select(sa.func.max(tables.schema_migrations.c.version))).scalar()
    return int(found or 0)


def check(conn: sa.Connection) -> None:
    """Raise `SchemaMismatch` unless the database is exactly at the latest version."""
    SchemaMismatch.check(current_version(conn), LATEST)


def apply(conn: sa.Connection, now: datetime) -> list[str]:
    """Apply every pending migration on `conn` (inside the caller's transaction)."""
    version = current_version(conn)
    if version > LATEST:
        raise SchemaMismatch.ahead(version, LATEST)
    if version == 0:
        tables.schema_migrations.create(conn, checkfirst=True)
    op = Operations(MigrationContext.configure(conn))
    applied: list[str] = []
    for module in MIGRATIONS:
        if version >= module.VERSION:
            continue
        module.upgrade(op)
        conn.execute(
            tables.schema_migrations.insert().values(
                version=module.VERSION, name=module.NAME, applied_at=now
            )
        )
        applied.append(f"{module.VERSION:04d}_{module.NAME}")
    return applied
