"""Migration 0005 on a database with rows, and the query plans of the durable operations: every
statement they run reads an index, and the partial indexes are the ones used."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from agentqueue.backends.base import Outcome, OutcomeKind
from agentqueue.backends.sql import migrations, tables
from agentqueue.backends.sql.backend import SqlBackend
from agentqueue.backends.sql.postgres import PostgresBackend
from agentqueue.backends.sql.sqlite import SqliteBackend
from agentqueue.models import FOREVER
from tests.backends.test_sql_durable import LATER, T0, lease, new_job
from tests.conftest import POSTGRES_URL

# -- migration 0005 over existing rows -------------------------------------------------------


def _build_version_4_with_a_job(conn: sa.Connection) -> None:
    tables.schema_migrations.create(conn)
    op = Operations(MigrationContext.configure(conn))
    for module in migrations.MIGRATIONS[:4]:
        module.upgrade(op)
        conn.execute(
            tables.schema_migrations.insert().values(
                version=module.VERSION, name=module.NAME, applied_at=T0
            )
        )
    job = {
        "id": 7,
        "queue": "default",
        "job_type": "old",
        "payload": {},
        "status": "pending",
        "priority": 0,
        "run_at": T0,
        "created_at": T0,
        "updated_at": T0,
        "attempts": 0,
        "max_attempts": 3,
        "error_history": [],
        "tags": ["kept"],
        "retry_delay": 1.0,
        "retry_backoff": False,
        "progress": 0,
        "cancel_requested": False,
    }
    conn.execute(tables.jobs.insert().values(job))  # only the columns version 4 has
    conn.execute(tables.job_tags.insert().values(job_id=7, tag="kept"))
    conn.execute(
        tables.job_events.insert().values(
            job_id=7,
            job_type="old",
            queue="default",
            type="added",
            status="pending",
            at=T0,
            data={},
        )
    )


async def _upgraded(backend: SqlBackend) -> None:
    assert (await backend.migrate())[:1] == ["0005_durable"]  # and any later migrations
    job = await backend.get_job(7)
    assert job is not None
    assert (job.force_kill_on_timeout, job.waiting_for, job.tags) == (False, None, ["kept"])
    assert [e.type.value for e in await backend.job_events(7)] == ["added"]
    (claimed,) = await backend.claim(
        worker_id="w", queue=None, job_types=None, limit=1, lease_seconds=30, now=T0
    )
    assert claimed.id == 7


async def test_sqlite_upgrade_keeps_jobs_tags_events_and_the_claim_indexes(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        _build_version_4_with_a_job(conn)
    store = SqliteBackend.from_url(url)
    try:
        await _upgraded(store)
    finally:
        await store.close()
    with engine.connect() as conn:
        # An ADD COLUMN, not a copy of aq_jobs: the claim indexes keep their DESC.
        claim_index = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'aq_jobs_claim_any'"
        ).scalar_one()
        tag_rows = conn.exec_driver_sql("SELECT count(*) FROM aq_job_tags").scalar_one()
        # Events were copied into an AUTOINCREMENT table, which remembers the highest id.
        event_floor = conn.exec_driver_sql(
            "SELECT seq FROM sqlite_sequence WHERE name = 'aq_job_events'"
        ).scalar_one()
    engine.dispose()
    assert "priority DESC" in claim_index
    assert tag_rows == 1
    assert event_floor >= 1


async def test_postgres_upgrade_keeps_jobs_tags_and_events(postgres_url: str) -> None:
    schema = postgres_url.rsplit("schema=", 1)[1]
    engine = create_async_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"),
        connect_args={"server_settings": {"search_path": schema}},
    )
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            await conn.run_sync(_build_version_4_with_a_job)
    finally:
        await engine.dispose()
    store = PostgresBackend.from_url(postgres_url)
    try:
        await _upgraded(store)
    finally:
        await store.close()


# -- what Alembic's comparison does not see --------------------------------------------------
# (partial-index conditions, DESC, AUTOINCREMENT): the migrated DDL against tables.py's own.


async def test_sqlite_migrated_ddl_is_the_head_schema_ddl(tmp_path: Path) -> None:
    store = SqliteBackend.from_url(f"sqlite:///{tmp_path / 'migrated.db'}")
    await store.open(migrate=True)
    await store.close()
    fresh = sa.create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    tables.metadata.create_all(fresh)

    def ddl(path: Path) -> dict[str, str]:
        engine = sa.create_engine(f"sqlite:///{path}")
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE name != 'aq_schema_migrations'"
            ).all()
        engine.dispose()
        return {name: " ".join((sql or "").replace('"', "").split()) for name, sql in rows}

    fresh.dispose()
    assert ddl(tmp_path / "migrated.db") == ddl(tmp_path / "fresh.db")


async def test_postgres_migrated_indexes_are_the_head_schema_indexes(postgres_url: str) -> None:
    migrated = postgres_url.rsplit("schema=", 1)[1]
    fresh = f"{migrated}_fresh"
    store = PostgresBackend.from_url(postgres_url)
    await store.open(migrate=True)
    await store.close()
    engine = create_async_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"),
        connect_args={"server_settings": {"search_path": fresh}},
    )
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'CREATE SCHEMA "{fresh}"')
            await conn.run_sync(tables.metadata.create_all)
        async with engine.connect() as conn:
            found: dict[str, dict[str, str]] = {}
            for schema in (migrated, fresh):
                rows = await conn.exec_driver_sql(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1", (schema,)
                )
                found[schema] = {
                    row.indexname: row.indexdef.replace(f"{schema}.", "") for row in rows
                }
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{fresh}" CASCADE')
        await engine.dispose()
    assert found[migrated] == found[fresh]


# -- query plans ------------------------------------------------------------------------------


@contextmanager
def _statements(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """Record the single-row-parameter statements run on `engine`."""
    seen: list[tuple[str, Any]] = []

    def record(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        if not executemany and statement.lstrip().startswith(("SELECT", "UPDATE", "DELETE")):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def _durable_statements(backend: SqlBackend, engine: sa.Engine) -> list[tuple[str, Any]]:
    """Build jobs in every durable state, then record what the sweeps and a completion run."""
    await backend.insert_jobs([new_job() for _ in range(40)], now=T0)
    jobs = await backend.claim(
        worker_id="w", queue=None, job_types=None, limit=40, lease_seconds=30, now=T0
    )
    await backend.finish(
        worker_id="w",
        outcomes=[Outcome(OutcomeKind.COMPLETE, lease(job)) for job in jobs[:20]],
        now=T0,
    )
    for n, job in enumerate(jobs[20:30]):
        token = f"k{n}" if n % 2 else None
        await backend.create_token(
            token_id=f"k{n}", job_id=job.id, step="s", expires_at=LATER, tags=["t"], now=T0
        )
        until = FOREVER if token else LATER
        await backend.suspend(worker_id="w", lease=lease(job), until=until, token_id=token, now=T0)
    after = LATER + timedelta(seconds=1)
    with _statements(engine) as seen:
        await backend.complete_token("k1", 1, now=T0)
        await backend.resume_due(now=after)
        await backend.expire_tokens(now=after)
        await backend.purge(finished_before=LATER, events_before=T0 + timedelta(seconds=1))
    return seen


_INDEXES = ("aq_jobs_wake", "aq_jobs_waiting_for", "aq_jobs_finished", "aq_tokens_expiry")


async def test_sqlite_durable_statements_search_indexes(sqlite_url: str) -> None:
    backend = SqliteBackend.from_url(sqlite_url)
    await backend.open(migrate=True)
    try:
        seen = await _durable_statements(backend, backend.engine)

        def plan(conn: sa.Connection, statement: str, params: Any) -> str:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
            return " | ".join(row[-1] for row in rows)

        plans = [await backend._read(lambda c, s=s, p=p: plan(c, s, p)) for s, p in seen]
    finally:
        await backend.close()
    everything = "\n".join(plans)
    for name in (*_INDEXES, "aq_job_events_at"):
        assert name in everything
    for statement_plan in plans:
        assert " SCAN " not in f" {statement_plan}", statement_plan


async def test_postgres_durable_statements_can_use_the_partial_indexes(
    postgres_url: str,
) -> None:
    backend = PostgresBackend.from_url(postgres_url)
    await backend.open(migrate=True)
    try:
        seen = await _durable_statements(backend, backend.engine.sync_engine)

        def plan(conn: sa.Connection, statement: str, params: Any) -> str:
            # Tables this small are read whole; without that way out, the plan shows whether
            # PostgreSQL can prove a partial index's condition from the statement.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", tuple(params)).all()
            return "\n".join(row[0] for row in rows)

        plans = [await backend._write(lambda c, s=s, p=p: plan(c, s, p)) for s, p in seen]
    finally:
        await backend.close()
    everything = "\n".join(plans)
    for name in (*_INDEXES, "aq_job_events_at"):
        assert name in everything
    for statement_plan in plans:
        assert "Seq Scan" not in statement_plan, statement_plan
