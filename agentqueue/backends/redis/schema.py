"""The Redis store's schema version and the server checks made when it opens.

The data model (keys.py) is versioned by one key, `{prefix}:schema`, with the same rules as
the SQL stores: a store behind this code is refused until `agentqueue migrate` (or
`Queue(migrate=True)`) brings it up; a store ahead of it is refused.

Redis evicts keys under memory pressure unless `maxmemory-policy` is `noeviction`; for a queue
an evicted key is a lost job (or a half-indexed one). Opening checks the policy and logs a
warning that says so; servers that disable CONFIG are tolerated (the policy is then unknown).
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from agentqueue.backends.redis.client import RedisClient
from agentqueue.errors import BackendUnavailable, SchemaMismatch

logger = logging.getLogger(__name__)

MIGRATIONS = [(1, "initial")]
"""(version, name) of each step; version 1 is the first data model, which needs no writes."""
LATEST = MIGRATIONS[-1][0]
MIN_REDIS = (7, 0)
"""Functions (FUNCTION LOAD, FCALL), script flags and exclusive XRANGE bounds need Redis 7."""


async def current_version(client: RedisClient) -> int:
    """Return the stored schema version (0 for a prefix never migrated)."""
    found = await client.call(lambda r: r.get(client.keys.schema))
    return int(found or 0)


async def check(client: RedisClient) -> None:
    """Raise `SchemaMismatch` unless the prefix is exactly at the latest version."""
    SchemaMismatch.check(await current_version(client), LATEST)


async def migrate(client: RedisClient) -> list[str]:
    """Apply pending steps in order and return their names."""
    version = await current_version(client)
    if version > LATEST:
        raise SchemaMismatch.ahead(version, LATEST)
    applied: list[str] = []
    for step, name in MIGRATIONS:
        if version >= step:
            continue
        # Set only if still at the version we read: two processes migrating at once apply
        # each step once (a later step with writes will be a script doing the same check).
        done = await client.call(lambda r, s=step: _advance(r, client.keys.schema, s))
        if done:
            applied.append(f"{step:04d}_{name}")
        version = step
    return applied


async def _advance(r: Redis, key: str, step: int) -> bool:
    """Record step 1 (the first data model needs no writes). A later step brings its own
    script, and `MIGRATIONS` lists only the steps that exist."""
    if step != 1:
        raise AssertionError(f"schema step {step} is listed but has no script")
    return bool(await r.set(key, step, nx=True))


async def check_server(client: RedisClient) -> str | None:
    """Refuse a Redis older than 7.0; warn when keys may be evicted; return the policy."""
    try:
        info = await client.call(lambda r: r.info("server"))
    except BackendUnavailable as error:
        if not isinstance(error.__cause__, ResponseError):
            raise
        info = {}  # INFO renamed or denied (ACL): the scripts will say if the server is too old
    version = str(info.get("redis_version", ""))
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if len(numbers) == 2 and numbers < MIN_REDIS:
        raise BackendUnavailable(
            f"Redis at {client.where} is version {version}; agentqueue needs Redis 7.0 or newer"
        )
    try:
        found = await client.call(lambda r: r.config_get("maxmemory-policy"))
    except BackendUnavailable as error:
        if not isinstance(error.__cause__, ResponseError):
            raise
        logger.info(
            "cannot read maxmemory-policy of Redis at %s (CONFIG is disabled): make sure it is "
            "noeviction, or Redis may delete jobs when memory runs short",
            client.where,
        )
        return None
    policy = found.get("maxmemory-policy")
    if policy is not None and policy != "noeviction":
        logger.warning(
            "Redis at %s has maxmemory-policy %s: when it reaches maxmemory it will DELETE keys, "
            "and every evicted key is a lost or corrupted job. Set `maxmemory-policy "
            "noeviction` (redis.conf or CONFIG SET) so a full Redis refuses writes instead; "
            "agentqueue then reports them as errors and loses nothing.",
            client.where,
            policy,
        )
    return policy
