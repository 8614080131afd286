"""PostgreSQL: `aq_job_events` without its foreign key to `aq_jobs`.

PostgreSQL checks a foreign key with a trigger per inserted row that looks the job up and locks
it (`FOR KEY SHARE`): every enqueue, claim and outcome writes one event per job, and the check
was about a third of an event insert's server time (1,000 events: 10.6 of 29 ms, EXPLAIN
ANALYZE). The key guarded nothing the code does not keep anyway: an event is written with its
job, in the job's transaction, and the purge deletes a job's events before the job. SQLite keeps
the key (its check is a cheap index probe, and dropping it would mean rebuilding the table).
"""

from __future__ import annotations

from alembic.operations import Operations

VERSION = 10
NAME = "events_without_job_key"


def upgrade(op: Operations) -> None:
    """Drop the events' foreign key to the jobs (PostgreSQL)."""
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE aq_job_events DROP CONSTRAINT IF EXISTS aq_job_events_job_id_fkey")
