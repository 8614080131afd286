"""The doors' data on the Redis store: worker presence, API keys and the audit log.

| key | type | holds |
|---|---|---|
| `{p}:workers` | hash | worker id -> WorkerInfo JSON (without `last_seen_at`) |
| `{p}:workers_seen` | zset | worker ids by last beat (epoch us) |
| `{p}:api_keys` | hash | key id -> ApiKey JSON (never the secret) |
| `{p}:api_key_hashes` | hash | SHA-256 of an active key's secret -> key id |
| `{p}:api_key_names` | hash | an active key's name -> `<id> <hash>` |
| `{p}:audit`, `{p}:next_audit_id` | stream, string | audit records, entry id `<id>-0` |

Each write is one script (`scripts/worker_beat.lua`, `api_key_*.lua`, `audit_write.lua`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agentqueue.backends.redis import codec
from agentqueue.backends.redis.client import RedisClient, ScriptRefused
from agentqueue.backends.redis.consume import server_now
from agentqueue.errors import InvalidArgument
from agentqueue.models import ApiKey, AuditRecord, WorkerInfo


async def beat_worker(client: RedisClient, info: WorkerInfo, now: datetime | None) -> None:
    """Record a live worker; see `Backend.beat_worker`."""
    data = info.model_dump(mode="json", exclude={"last_seen_at"})
    await client.run("worker_beat", [codec.now_arg(now), info.id, codec.dumps(data), "0"])


async def remove_worker(client: RedisClient, worker_id: str) -> None:
    """Forget a worker; see `Backend.remove_worker`."""
    await client.run("worker_beat", ["", worker_id, "", "1"])


async def list_workers(client: RedisClient, seen_after: datetime | None) -> list[WorkerInfo]:
    """The workers seen after a time; see `Backend.list_workers`."""
    keys = client.keys
    low = "-inf" if seen_after is None else f"({codec.micros(seen_after)}"

    async def read(r: Any) -> tuple[list[tuple[str, float]], list[str | None]]:
        seen = await r.zrangebyscore(keys.workers_seen, low, "+inf", withscores=True)
        found = await r.hmget(keys.workers, [worker_id for worker_id, _ in seen]) if seen else []
        return seen, found

    seen, found = await client.call(read)
    workers = [
        WorkerInfo.model_validate(
            {**json.loads(data), "last_seen_at": codec.from_micros(int(score))}
        )
        for (_, score), data in zip(seen, found, strict=True)
        if data is not None
    ]
    return sorted(workers, key=lambda w: (w.started_at, w.id))


async def forget_workers(client: RedisClient, seen_before: datetime) -> int:
    """Forget workers not seen since a time; see `Backend.forget_workers`."""
    keys = client.keys
    stale: list[str] = await client.call(
        lambda r: r.zrangebyscore(keys.workers_seen, "-inf", f"({codec.micros(seen_before)}")
    )
    for worker_id in stale:
        await remove_worker(client, worker_id)
    return len(stale)


async def put_api_key(client: RedisClient, key: ApiKey, secret_hash: str) -> None:
    """Store a key; see `Backend.put_api_key`."""
    data = codec.dumps(key.model_dump(mode="json"))
    try:
        await client.run("api_key_put", [key.id, key.name, secret_hash, data])
    except ScriptRefused:
        raise InvalidArgument(
            f"an API key named {key.name!r} exists: revoke it first, or choose another name"
        ) from None


async def find_api_key(client: RedisClient, secret_hash: str) -> ApiKey | None:
    """The active key of a secret's hash; see `Backend.find_api_key`."""
    keys = client.keys

    async def read(r: Any) -> str | None:
        key_id = await r.hget(keys.api_key_hashes, secret_hash)
        return await r.hget(keys.api_keys, key_id) if key_id is not None else None

    data = await client.call(read)
    return ApiKey.model_validate_json(data) if data is not None else None


async def list_api_keys(client: RedisClient) -> list[ApiKey]:
    """Every key; see `Backend.list_api_keys`."""
    raw: dict[str, str] = await client.call(lambda r: r.hgetall(client.keys.api_keys))
    found = [ApiKey.model_validate_json(data) for data in raw.values()]
    return sorted(found, key=lambda k: (k.created_at, k.id))


async def revoke_api_key(client: RedisClient, name: str, now: datetime | None) -> ApiKey | None:
    """Revoke a key by name; see `Backend.revoke_api_key`."""
    at = now if now is not None else await server_now(client)
    stored = await client.run("api_key_revoke", [at.isoformat(), name])
    return ApiKey.model_validate_json(stored) if stored else None


async def write_audit(client: RedisClient, record: AuditRecord) -> AuditRecord:
    """Append an audit record; see `Backend.write_audit`."""
    data = codec.dumps(record.model_dump(mode="json", exclude={"id"}))
    record_id = await client.run("audit_write", [data])
    return record.model_copy(update={"id": int(record_id)})


async def list_audit(client: RedisClient, limit: int, before_id: int | None) -> list[AuditRecord]:
    """Audit records, newest first; see `Backend.list_audit`."""
    high = "+" if before_id is None else f"({before_id}-0"
    entries = await client.call(lambda r: r.xrevrange(client.keys.audit, high, "-", count=limit))
    return [_record(entry_id, fields) for entry_id, fields in entries]


async def purge_audit(client: RedisClient, before: datetime, limit: int) -> int:
    """Delete the oldest audit records before a time; see `Backend.purge_audit`."""
    entries = await client.call(lambda r: r.xrange(client.keys.audit, "-", "+", count=limit))
    old = [entry_id for entry_id, fields in entries if _record(entry_id, fields).at < before]
    if not old:
        return 0
    return int(await client.call(lambda r: r.xdel(client.keys.audit, *old)))


def _record(entry_id: str, fields: dict[str, str]) -> AuditRecord:
    values = json.loads(fields["record"])
    return AuditRecord.model_validate({**values, "id": int(entry_id.split("-", 1)[0])})
