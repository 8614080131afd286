"""Migrations build exactly the head schema in tables.py, are idempotent, and guard versions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from agentqueue import Queue, SchemaMismatch
from agentqueue.backends.sql import migrations, tables
from tests.conftest import POSTGRES_URL

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _schema_diff(conn: sa.Connection) -> list[object]:
    dialect = conn.dialect.name

    def on_this_dialect(item: object, name: str | None, kind: str, *_: object) -> bool:
        # An index declared with ddl_if(dialect=...) exists only there.
        wanted = getattr(getattr(item, "_ddl_if", None), "dialect", None)
        return wanted is None or wanted == dialect

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": on_this_dialect}
    )
    return list(compare_metadata(context, tables.metadata))


async def test_migrated_database_matches_the_head_schema_exactly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    async with Queue(url):
        pass
    with sa.create_engine(url).connect() as conn:
        diff = _schema_diff(conn)
    assert diff == []


async def test_migrate_applies_once_then_reports_up_to_date(tmp_path: Path) -> None:
    queue = Queue(f"sqlite:///{tmp_path / 'm.db'}", migrate=False)
    first = await queue.backend.migrate()
    second = await queue.backend.migrate()
    await queue.backend.close()
    assert first == [f"{m.VERSION:04d}_{m.NAME}" for m in migrations.MIGRATIONS]
    assert second == []


async def test_opening_an_unmigrated_store_without_migrate_says_how_to_fix_it(
    tmp_path: Path,
) -> None:
    queue = Queue(f"sqlite:///{tmp_path / 'm.db'}", migrate=False)
    with pytest.raises(SchemaMismatch, match="agentqueue migrate"):
        await queue.open()
    await queue.backend.close()


async def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    async with Queue(url) as queue:
        now = queue.clock.now()
    with sa.create_engine(url).begin() as conn:
        conn.execute(
            tables.schema_migrations.insert().values(
                version=migrations.LATEST + 1, name="future", applied_at=now
            )
        )
    queue = Queue(url, migrate=False)
    with pytest.raises(SchemaMismatch, match="newer than this code"):
        await queue.open()
    await queue.backend.close()


async def test_upgrading_from_version_1_keeps_rows_and_fills_new_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables.schema_migrations.create(conn)
        migrations.m0001_initial.upgrade(Operations(MigrationContext.configure(conn)))
        conn.execute(
            tables.schema_migrations.insert().values(version=1, name="initial", applied_at=T0)
        )
        conn.execute(
            sa.text(
                "INSERT INTO aq_job_types (name, description, queue, payload_schema, examples,"
                " updated_at) VALUES ('old', '', 'default', '{}', '[]', 0)"
            )
        )
    engine.dispose()
    async with Queue(url) as queue:
        (old,) = await queue.list_job_types()
    assert old.name == "old"
    assert old.defaults.max_attempts is None


async def test_migrated_postgres_schema_matches_the_head_schema_exactly(postgres_url: str) -> None:
    async with Queue(postgres_url) as queue:
        schema = postgres_url.rsplit("schema=", 1)[1]
        engine = create_async_engine(
            POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"),
            connect_args={"server_settings": {"search_path": schema}},
        )
        try:
            async with engine.connect() as conn:
                diff = await conn.run_sync(_schema_diff)
        finally:
            await engine.dispose()
        assert queue.backend.capabilities.durable
    assert diff == []
