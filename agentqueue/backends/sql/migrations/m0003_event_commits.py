"""Commit-ordered event feed: events record their transaction; committed ones get a number.

On PostgreSQL, event ids come from a sequence and are not in commit order (a transaction that
took id 10 may commit after one that took id 11), so a reader following ids could skip an
event for ever. Each transaction that writes events adds, at commit time, one row to
`aq_event_commits` (its txid, no number yet); the same deferred trigger sends the NOTIFY that
wakes workers and feeds. Readers first number the committed rows that have no number yet, one
numbering at a time (an advisory lock), so numbers follow the order in which commits became
visible; they then follow (number, event id), which is gap-free. Writers take no lock.
SQLite has one writer, so its ids are already in commit order: the columns exist for one
shared schema and stay unused.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

VERSION = 3
NAME = "event_commits"

_COMMIT_FUNCTION = """
CREATE OR REPLACE FUNCTION aq_commit_events() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    flag text := 'agentqueue.c' || substr(md5(TG_TABLE_SCHEMA), 1, 16);
BEGIN
    IF coalesce(current_setting(flag, true), '') = 'y' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config(flag, 'y', true);
    EXECUTE format(
        'INSERT INTO %I.aq_event_commits (txid) VALUES (pg_current_xact_id()::text::bigint)',
        TG_TABLE_SCHEMA);
    PERFORM pg_notify('agentqueue', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$fn$
"""


def upgrade(op: Operations) -> None:
    """Add `aq_job_events.txid`, `aq_event_commits` and, on PostgreSQL, the commit trigger."""
    postgres = op.get_context().dialect.name == "postgresql"
    default = "pg_current_xact_id()::text::bigint" if postgres else "0"
    with op.batch_alter_table("aq_job_events") as batch:
        batch.add_column(
            sa.Column("txid", sa.BigInteger(), nullable=False, server_default=sa.text(default))
        )
    op.create_index("aq_job_events_txid", "aq_job_events", ["txid", "id"])
    op.create_table(
        "aq_event_commits",
        sa.Column("txid", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=True, unique=True),
    )
    op.create_index(
        "aq_event_commits_unnumbered",
        "aq_event_commits",
        ["txid"],
        sqlite_where=sa.text("seq IS NULL"),
        postgresql_where=sa.text("seq IS NULL"),
    )
    if postgres:
        op.execute("CREATE SEQUENCE IF NOT EXISTS aq_event_seq")
        op.execute(_COMMIT_FUNCTION)
        op.execute(
            "CREATE CONSTRAINT TRIGGER aq_job_events_commit AFTER INSERT ON aq_job_events "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION aq_commit_events()"
        )
