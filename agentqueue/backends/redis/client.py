"""The Redis store's connections: a redis-py pool, the Lua scripts, error translation.

Scripts are `scripts/<name>.lua`, each with `_lib.lua` prepended, registered once per
connection pool: a call is EVALSHA, and redis-py loads the script (SCRIPT LOAD) only when the
server answers NOSCRIPT (first use, or after a restart or SCRIPT FLUSH).

redis-py's automatic retries are switched off: a write script resent after a dropped connection
may run twice (two jobs for one `add_jobs`). A lost reply becomes `BackendUnavailable` and the
caller decides (an idempotency key makes an enqueue safe to repeat). Reads, which are safe to
repeat, go through `call`, which tries them once more on a fresh connection. A connection the
server closed while it sat in the pool is replaced before use, so a Redis restart or an idle
timeout does not fail the next write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from importlib.resources import files
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentqueue.backends.redis.keys import Keys, RedisOptions, check_prefix
from agentqueue.errors import AgentQueueError, BackendUnavailable, ConfigError

T = TypeVar("T")

SCRIPTS = (
    "insert",
    "claim",
    "heartbeat",
    "finish",
    "progress",
    "rescue",
    "cancel",
    "retry",
    "edit",
    "publish",
    "read_jobs",
)


POOL_SIZE = 50
"""Connections per store and process; more concurrent calls wait for one (up to 20 s)."""


def _without_maintenance_notifications() -> dict[str, Any]:
    """Pool options that switch off redis-py 8's maintenance notifications.

    With them on (the default, "auto"), the pool skips its check that a pooled connection is
    still open before handing it out; without automatic retries, every connection the server
    closed (restart, idle timeout, CLIENT KILL) would then fail one call.
    """
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # redis-py before 7 has no such feature
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


class ScriptRefused(AgentQueueError):
    """A script refused an operator's change: `reason` is `not_found` or `invalid`.

    Internal: the operation that called the script turns it into `JobNotFound` or
    `InvalidTransition` with the job's id and the action's own message.
    """

    code = "script_refused"

    def __init__(self, reason: str, status: str | None) -> None:
        super().__init__(f"refused: {reason} ({status})")
        self.reason = reason
        self.status = status


@cache
def script_source(name: str) -> str:
    """Return a script's full text: the shebang, the shared helpers, then the script."""
    folder = files("agentqueue.backends.redis").joinpath("scripts")
    lib = folder.joinpath("_lib.lua").read_text(encoding="utf-8")
    body = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    # The shebang must be the first line: it makes Redis refuse a whole writing script when out
    # of memory (instead of failing between two of its writes); readers may run on replicas.
    flags = " flags=no-writes" if name.startswith("read_") else ""
    return f"#!lua{flags}\n{lib}\n{body}"


def options_from_client(client: Any, prefix: str) -> RedisOptions:
    """Return options that connect like a caller's redis-py asyncio client.

    The store opens its own connections with the client's settings (server, credentials, TLS,
    database) and never touches or closes the caller's: it needs decoded replies, no automatic
    retries and a connection of its own for blocking reads, which the caller's pool may not
    give.

    Raises:
        ConfigError: not a redis-py asyncio client (a sync or cluster client).
    """
    if not isinstance(client, aioredis.Redis):
        raise ConfigError(
            f"cannot build a Redis store from {type(client).__module__}.{type(client).__name__}: "
            "pass a redis.asyncio.Redis client (Redis Cluster clients are not supported yet)"
        )
    pool = client.connection_pool
    settings = (pool.connection_class, dict(pool.connection_kwargs))
    return RedisOptions(url=None, prefix=check_prefix(prefix), client_settings=settings)


class RedisClient:
    """One store's pool, keys and scripts; every Redis call of the store goes through it."""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self.keys = Keys(options.prefix)
        self.where = _where(options)
        """Where the server is, for messages (never the password)."""
        self.redis = self.connect()
        self._scripts = {name: self.redis.register_script(script_source(name)) for name in SCRIPTS}

    def connect(self, *, dedicated: bool = False) -> aioredis.Redis:
        """Return a client with a pool of its own.

        `dedicated` holds one connection (for blocking reads, which must not share a connection
        with other commands) without a socket timeout: a caller's timeout shorter than the
        block would cut every blocking read; the reader bounds its reads itself.
        """
        overrides: dict[str, Any] = {
            "decode_responses": True,
            "retry": Retry(NoBackoff(), 0),
            # Named, so an operator can tell them apart in CLIENT LIST.
            "client_name": f"agentqueue:{self.options.prefix}" + (":watch" if dedicated else ""),
            **_without_maintenance_notifications(),
        }
        if dedicated:
            overrides["socket_timeout"] = None
        # A blocking pool: a burst of calls waits for a free connection instead of failing
        # with "too many connections".
        if self.options.url is not None:
            pool = aioredis.BlockingConnectionPool.from_url(
                self.options.url, max_connections=POOL_SIZE, **overrides
            )
        else:
            assert self.options.client_settings is not None
            connection_class, settings = self.options.client_settings
            pool = aioredis.BlockingConnectionPool(
                connection_class=connection_class,
                max_connections=POOL_SIZE,
                **{**settings, **overrides},
            )
        client = aioredis.Redis(connection_pool=pool, single_connection_client=dedicated)
        client.auto_close_connection_pool = True  # the pool is ours: closing the client ends it
        return client

    async def run(self, script: str, args: Sequence[str | int]) -> Any:
        """Run one of `SCRIPTS` on this prefix; refusals raise `ScriptRefused`.

        Raises:
            BackendUnavailable: Redis cannot be reached or refused the call.
        """
        try:
            return await self._scripts[script](keys=[self.keys.tag], args=list(args))
        except RedisError as error:
            raise self.translate(error) from error

    async def call(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run commands that are safe to repeat (reads, idempotent writes) on the pool, once
        more on a fresh connection if the first one dropped.

        Raises:
            BackendUnavailable: Redis cannot be reached or refused a command.
        """
        try:
            return await work(self.redis)
        except (RedisConnectionError, RedisTimeoutError):
            pass
        except RedisError as error:
            raise self.translate(error) from error
        try:
            return await work(self.redis)
        except RedisError as error:
            raise self.translate(error) from error

    def translate(self, error: RedisError) -> AgentQueueError:
        """Return the project's error for a redis-py exception."""
        message = str(error)
        if isinstance(error, ResponseError):
            if message.startswith("AQ_"):
                words = message.split()
                reason = words[0].removeprefix("AQ_").lower()
                status = words[1] if len(words) > 1 and reason == "invalid" else None
                return ScriptRefused(reason, status)
            if message.startswith("OOM"):
                return BackendUnavailable(
                    f"Redis at {self.where} is out of memory (maxmemory reached); nothing "
                    f"was written: {message}"
                )
            return BackendUnavailable(f"Redis at {self.where} refused the command: {message}")
        return BackendUnavailable(f"cannot reach Redis at {self.where}: {message}")

    async def close(self) -> None:
        """Close the pool's connections."""
        await self.redis.aclose()


def _where(options: RedisOptions) -> str:
    if options.url is not None:
        parts = urlsplit(options.url)
        return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"
    assert options.client_settings is not None
    settings = options.client_settings[1]
    db = settings.get("db", 0)
    if "path" in settings:
        return f"unix:{settings['path']}/{db}"
    return f"{settings.get('host', 'localhost')}:{settings.get('port', 6379)}/{db}"
