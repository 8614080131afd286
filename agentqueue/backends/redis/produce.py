"""Enqueue on the Redis store: a whole batch in one script call (`scripts/insert.lua`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from agentqueue.backends.base import InsertJob, InsertResult
from agentqueue.backends.redis import codec
from agentqueue.backends.redis.client import RedisClient


def _job_args(job: InsertJob) -> list[str]:
    """The 14 script arguments of one job (see insert.lua)."""
    # With an explicit run_at the client adds the delay: exact for any date, where Lua's
    # doubles are exact only for a few centuries around 1970.
    run_at = (
        str(codec.micros(job.run_at) + codec.duration_us(job.delay))
        if job.run_at is not None
        else ""
    )
    return [
        job.job_type,
        job.queue,
        codec.dumps(job.payload),
        str(job.priority),
        run_at,
        str(codec.duration_us(job.delay)),
        codec.dumps(job.tags),
        str(job.max_attempts),
        codec.number(job.retry_delay),
        codec.flag(job.retry_backoff),
        codec.number(job.retry_delay_max),
        codec.number(job.timeout),
        job.idempotency_key or "",
        codec.flag(job.force_kill_on_timeout),
    ]


async def insert(
    client: RedisClient, new_jobs: Sequence[InsertJob], now: datetime | None
) -> tuple[list[InsertResult], int]:
    """Store jobs atomically; return their results in input order and the last event id."""
    args: list[str] = [codec.now_arg(now), str(len(new_jobs))]
    for job in new_jobs:
        args.extend(_job_args(job))
    reply = await client.run("insert", args)
    results = [
        InsertResult(int(reply[i]), created=int(reply[i + 1]) == 1) for i in range(1, len(reply), 2)
    ]
    return results, int(reply[0])
