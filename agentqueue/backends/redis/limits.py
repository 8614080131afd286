"""Flow limits on the Redis store: one hash of limits, updated by script.

`{p}:limits` maps `<scope>:<key>` to the limit as a JSON object (absent fields: no such limit).
The claim script (`scripts/claim.lua`) reads it on every claim and enforces it: running jobs
per job type come from the `counts` hash, per group from `running_groups` (kept by
`move_status`), rate windows are `rate:<scope>:<key>` sorted sets of start times.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agentqueue.backends.redis import codec
from agentqueue.backends.redis.client import RedisClient
from agentqueue.models import Limit, LimitScope


def field(scope: LimitScope, key: str) -> str:
    """The `limits` hash field of one limit."""
    return f"{scope.value}:{key}"


def limit_from_json(name: str, text: str) -> Limit:
    """Build a `Limit` from its hash field and JSON value."""
    scope, key = name.split(":", 1)
    values: dict[str, Any] = json.loads(text)
    updated = values.pop("updated_at", None)
    return Limit.model_validate(
        {
            "scope": scope,
            "key": key,
            **values,
            "updated_at": codec.from_micros(int(updated)) if updated is not None else None,
        }
    )


async def update(
    client: RedisClient,
    scope: LimitScope,
    key: str,
    changes: dict[str, Any],
    now: datetime | None,
) -> tuple[Limit | None, int]:
    """Change some fields of one limit; return it (None: none left) and the announced id."""
    event_id, stored = await client.run(
        "limit_update", [codec.now_arg(now), field(scope, key), codec.dumps(changes)]
    )
    return (limit_from_json(field(scope, key), stored) if stored else None), int(event_id)


async def list_all(client: RedisClient) -> list[Limit]:
    """Every limit, by scope then key."""
    raw: dict[str, str] = await client.call(lambda r: r.hgetall(client.keys.limits))
    return [limit_from_json(name, raw[name]) for name in sorted(raw)]


async def remove(client: RedisClient, scope: LimitScope, key: str) -> tuple[bool, int]:
    """Delete one limit; return whether there was one, and the announced id (0: none)."""
    event_id, removed = await client.run("limit_remove", ["", field(scope, key)])
    return bool(removed), int(event_id)
