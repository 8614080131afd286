"""The job-type registry on the Redis store: one hash of JSON descriptions, by name."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agentqueue.backends.redis import codec
from agentqueue.backends.redis.client import RedisClient
from agentqueue.models import JobTypeInfo


async def publish(client: RedisClient, types: Sequence[JobTypeInfo], now: datetime | None) -> None:
    """Insert or replace job-type descriptions (one script: all or none)."""
    args = [codec.now_arg(now)]
    for info in types:
        args += [info.name, codec.job_type_json(info)]
    await client.run("publish", args)


async def list_types(client: RedisClient) -> list[JobTypeInfo]:
    """Return every published job type, by name."""
    keys = client.keys

    async def read(r: Any) -> list[dict[str, str]]:
        async with r.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.types)
            pipe.hgetall(keys.types_updated_at)
            return await pipe.execute()

    descriptions, updated = await client.call(read)
    return [
        codec.job_type_from_json(descriptions[name], updated.get(name))
        for name in sorted(descriptions)
    ]
