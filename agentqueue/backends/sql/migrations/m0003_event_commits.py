"""Commit-ordered event feed: events record their transaction; commits get a sequence number.

On PostgreSQL, event ids come from a sequence and are not in commit order (a transaction that
took id 10 may commit after one that took id 11), so a reader following ids could skip an
event for ever. Each transaction that writes events gets, at commit time, one row in
`aq_event_commits` with a number taken under a per-schema advisory lock held until the commit
ends; readers follow (commit number, event id), which is commit order and gap-free. The same
deferred trigger sends the NOTIFY that wakes workers and feeds. SQLite has one writer, so its
ids are already in commit order: the columns exist for one shared schema and stay 0.
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
    PERFORM pg_advisory_xact_lock(hashtext('agentqueue:' || TG_TABLE_SCHEMA));
    EXECUTE format(
        'INSERT INTO %I.aq_event_commits (txid, seq) '
        'VALUES (pg_current_xact_id()::text::bigint, nextval(%L))',
        TG_TABLE_SCHEMA, quote_ident(TG_TABLE_SCHEMA) || '.aq_event_seq');
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
        sa.Column("seq", sa.BigInteger(), nullable=False, unique=True),
    )
    if postgres:
        op.execute("CREATE SEQUENCE IF NOT EXISTS aq_event_seq")
        op.execute(_COMMIT_FUNCTION)
        op.execute(
            "CREATE CONSTRAINT TRIGGER aq_job_events_commit AFTER INSERT ON aq_job_events "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION aq_commit_events()"
        )
