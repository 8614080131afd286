"""Job types publish their handler's default job options."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from agentqueue.backends.sql.tables import JSONType

VERSION = 2
NAME = "job_type_defaults"


def upgrade(op: Operations) -> None:
    """Add `aq_job_types.defaults` (JSON object of job options, empty for old rows)."""
    with op.batch_alter_table("aq_job_types") as batch:
        batch.add_column(
            sa.Column("defaults", JSONType, nullable=False, server_default=sa.text("'{}'"))
        )
