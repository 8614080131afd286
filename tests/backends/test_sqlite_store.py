"""SQLite-only behaviour: query plans on the hot paths, URL options, in-process write queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from agentqueue import ConfigError, Queue
from agentqueue.backends.sql.consume import claim_statement, expired_probe
from agentqueue.backends.sql.sqlite import SqliteBackend, parse_url
from agentqueue.backends.sql.tables import IS_PENDING, jobs

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _plan(backend: SqliteBackend, query: sa.Select[Any]) -> str:
    compiled = query.compile(backend.engine, compile_kwargs={"render_postcompile": True})
    params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    with backend.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
    return " | ".join(row[-1] for row in rows)


async def test_claims_read_the_partial_claim_index_and_never_sort_the_backlog(
    sqlite_url: str,
) -> None:
    async with Queue(sqlite_url) as queue:
        backend = queue.backend
        assert isinstance(backend, SqliteBackend)
        await queue.add_jobs([{"job_type": "t", "queue": f"q{n % 3}"} for n in range(300)])
        any_queue = _plan(backend, claim_statement(None, None, 10, NOW))
        one_queue = _plan(backend, claim_statement("q1", None, 10, NOW))
        some_types = _plan(backend, claim_statement(None, ["t", "u"], 10, NOW))
        next_due = _plan(
            backend,
            sa.select(sa.func.min(jobs.c.run_at))
            .where(IS_PENDING)
            .with_hint(jobs, "INDEXED BY aq_jobs_due", dialect_name="sqlite"),
        )
        rescue = _plan(backend, expired_probe(NOW))
    assert "aq_jobs_claim_any" in any_queue
    assert "aq_jobs_claim_queue" in one_queue
    assert "aq_jobs_claim_any" in some_types
    for plan in (any_queue, one_queue, some_types):
        assert "TEMP B-TREE" not in plan
    assert "aq_jobs_due" in next_due
    assert "SCAN aq_jobs" not in rescue.replace("USING INDEX", "")


def test_sqlite_url_options_are_read_and_bad_ones_named() -> None:
    options = parse_url("sqlite:///jobs.db?synchronous=normal&busy_timeout=500&pool_size=2")
    assert (options.path, options.synchronous, options.busy_timeout_ms, options.pool_size) == (
        "jobs.db",
        "NORMAL",
        500,
        2,
    )
    assert parse_url("sqlite:///:memory:").path is None
    assert parse_url("memory://").path is None
    with pytest.raises(ConfigError, match="unknown SQLite URL option 'cache'"):
        parse_url("sqlite:///jobs.db?cache=shared")
    with pytest.raises(ConfigError, match="synchronous"):
        parse_url("sqlite:///jobs.db?synchronous=sometimes")
    with pytest.raises(ConfigError, match="does not exist"):
        Queue("sqlite:///no/such/folder/jobs.db")
