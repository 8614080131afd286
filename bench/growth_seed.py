"""Filling a bench store fast for growth.py: pending jobs, and completed jobs retained.

* `add_pending`: `queue.add_jobs` in batches, agentqueue's own bulk path.
* `complete_oldest`: the store's own `claim` + `finish`, 1,000 jobs a round (Redis; ~1.5k
  jobs/s on SQLite, too slow for a million).
* `complete_oldest_sql` (SQLite, PostgreSQL): one job is claimed and completed through the store
  (the template), then the oldest pending jobs are turned into copies of it in one transaction,
  with the SQL below: the columns `claim` and a COMPLETE `finish` set
  (`consume.claim_values`, `consume._values`) are copied from the template row, and each job gets
  the template's `claim` and `complete` event rows (job_id changed; on PostgreSQL the same txid,
  so the feed numbers them with the template's commit). Every other column keeps what
  `add_jobs` wrote.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence

import benchkit

from agentqueue import Queue
from agentqueue.backends.base import Lease, Outcome, OutcomeKind
from agentqueue.models import Job

WORKER = "growth-bench"
LEASE = 300.0
ROUND = 1000

COMPLETED_COLUMNS = (
    "status, attempts, locked_by, lease_expires_at, started_at, updated_at, completed_at, "
    "progress, output, cancel_requested"
)
# The oldest pending jobs in claim order (the claim index), as many as :n.
_OLDEST = (
    "SELECT id FROM aq_jobs WHERE status = 'pending' ORDER BY priority DESC, run_at, id LIMIT {n}"
)
_EVENTS = (
    "INSERT INTO aq_job_events (job_id, job_type, queue, type, status, at, data, txid) "
    "SELECT j.id, e.job_type, e.queue, e.type, e.status, e.at, e.data, e.txid "
    "FROM ({oldest}) j JOIN aq_job_events e ON e.job_id = {t} AND e.type <> 'added' "
    "ORDER BY j.id, e.id"
)
_JOBS = (
    f"UPDATE aq_jobs SET ({COMPLETED_COLUMNS}) = "
    f"(SELECT {COMPLETED_COLUMNS} FROM aq_jobs WHERE id = {{t}}) "
    "WHERE id IN ({oldest})"
)


def completed(jobs: Sequence[Job]) -> list[Outcome]:
    """COMPLETE outcomes for claimed jobs."""
    return [Outcome(OutcomeKind.COMPLETE, Lease(job.id, job.attempts)) for job in jobs]


async def claim(queue: Queue, limit: int) -> list[Job]:
    """One claim of up to `limit` jobs, as the worker calls it."""
    return await queue.backend.claim(
        worker_id=WORKER,
        queue=None,
        job_types=None,
        limit=limit,
        lease_seconds=LEASE,
        now=queue.now(),
    )


async def add_pending(queue: Queue, count: int, batch: int) -> float:
    """Enqueue `count` no-op jobs with `add_jobs` in batches; return the rate (jobs/s)."""
    start = time.perf_counter()
    for first in range(0, count, batch):
        size = min(batch, count - first)
        await queue.add_jobs(
            [{"job_type": "noop", "payload": {"i": first + k}} for k in range(size)]
        )
    return count / max(time.perf_counter() - start, 1e-9)


async def complete_oldest(queue: Queue, count: int) -> float:
    """Claim and complete `count` jobs through the store; return the rate (jobs/s)."""
    start, done = time.perf_counter(), 0
    while done < count:
        jobs = await claim(queue, min(ROUND, count - done))
        if not jobs:
            break
        await queue.backend.finish(worker_id=WORKER, outcomes=completed(jobs), now=queue.now())
        done += len(jobs)
    return done / max(time.perf_counter() - start, 1e-9)


def statements(template: int, count: int) -> list[str]:
    """The two statements that complete the `count` oldest pending jobs like `template`."""
    oldest = _OLDEST.format(n=int(count))
    return [_EVENTS.format(oldest=oldest, t=template), _JOBS.format(oldest=oldest, t=template)]


async def complete_oldest_sql(queue: Queue, store: str, name: str, count: int) -> float:
    """Complete the `count` oldest pending jobs as copies of one completed by the store."""
    start = time.perf_counter()
    template = await claim(queue, 1)
    await queue.backend.finish(worker_id=WORKER, outcomes=completed(template), now=queue.now())
    todo = statements(template[0].id, count - 1)
    if store == "sqlite":
        await asyncio.to_thread(_run_sqlite, name, todo)
    else:
        await _run_postgres(name, todo)
    return count / max(time.perf_counter() - start, 1e-9)


def _run_sqlite(name: str, todo: list[str]) -> None:
    conn = sqlite3.connect(benchkit.sqlite_path(name), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for statement in todo:
            conn.execute(statement)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def _run_postgres(name: str, todo: list[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(benchkit.PG_DSN, server_settings={"search_path": name})
    try:
        async with conn.transaction():
            for statement in todo:
                await conn.execute(statement)
        # What autovacuum would do over the minutes a worker takes to complete a million jobs:
        # without it the claim index still holds a million dead entries the first claims skip.
        await conn.execute("VACUUM aq_jobs")
        await conn.execute("VACUUM aq_job_events")
    finally:
        await conn.close()
