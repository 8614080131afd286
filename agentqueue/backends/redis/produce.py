"""Enqueue on the Redis store: a whole batch in one script call (`scripts/insert.lua`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from agentqueue.backends.base import InsertJob, InsertResult
from agentqueue.backends.redis import codec
from agentqueue.backends.redis.client import RedisClient


def job_args(job: InsertJob) -> list[str]:
    """The `JOB_ARGS` (19) script arguments of one job (see _insert.lua)."""
    delay = codec.duration_us(job.delay) if job.delay else 0
    # With an explicit run_at the client adds the delay: exact for any date, where Lua's
    # doubles are exact only for a few centuries around 1970.
    run_at = str(codec.micros(job.run_at) + delay) if job.run_at is not None else ""
    return [
        job.job_type,
        job.queue,
        codec.dumps(job.payload),
        str(job.priority),
        run_at,
        str(delay),
        codec.dumps(job.tags) if job.tags else "[]",
        str(job.max_attempts),
        codec.number(job.retry_delay),
        codec.flag(job.retry_backoff),
        codec.number(job.retry_delay_max),
        codec.number(job.timeout),
        job.idempotency_key or "",
        codec.flag(job.force_kill_on_timeout),
        job.group or "",
        _dead_letter(job),
        str(codec.duration_us(job.idempotency_window))
        if job.idempotency_window is not None
        else "",
        _dependencies(job),
        codec.dumps(job.origin) if job.origin is not None else "",
    ]


def _dead_letter(job: InsertJob) -> str:
    """The dead-letter job's own arguments as a JSON array ('' = none): the script that fails
    the job for good inserts it with the envelope as its payload (_flow.lua)."""
    if job.dead_letter is None:
        return ""
    return codec.dumps(job_args(InsertJob.for_dead_letter(job.dead_letter, None)))


def _dependencies(job: InsertJob) -> str:
    """The job's prerequisites as JSON ('' = none): ids, batch indexes (0-based), tags."""
    if not (job.depends_on or job.depends_on_batch or job.depends_on_tags):
        return ""
    return codec.dumps(
        {
            "ids": list(job.depends_on),
            "batch": list(job.depends_on_batch),
            "tags": list(job.depends_on_tags),
        }
    )


async def insert(
    client: RedisClient, new_jobs: Sequence[InsertJob], now: datetime | None
) -> tuple[list[InsertResult], int]:
    """Store jobs atomically; return their results in input order and the last event id."""
    args: list[str] = [codec.now_arg(now), str(len(new_jobs))]
    for job in new_jobs:
        args.extend(job_args(job))
    reply = await client.run("insert", args)
    at = codec.from_micros(reply[1])
    results = []
    for i in range(2, len(reply), 2):
        created = int(reply[i + 1]) == 1
        results.append(InsertResult(int(reply[i]), created, at if created else None))
    return results, int(reply[0])
