"""The Redis store's connections: a redis-py pool, the Lua scripts, error translation.

Scripts are `scripts/<name>.lua`, each made a Redis function library with `_lib.lua` (and its
helper files) before it (`script_source`): a call is FCALL on a pooled connection, and the
library is loaded (FUNCTION LOAD) only when the server answers that it has no such function
(first use, or after a restart without persistence or a FUNCTION FLUSH). A writing script's
body is followed by `announce()`, which publishes the newest event id it wrote for the change
watchers (events.py).

redis-py's automatic retries are switched off: a write script resent after a dropped connection
may run twice (two jobs for one `add_jobs`). A lost reply becomes `BackendUnavailable` and the
caller decides (an idempotency key makes an enqueue safe to repeat). Reads, which are safe to
repeat, go through `call`, which tries them once more on a fresh connection. A connection the
server closed while it sat in the pool is replaced before use, so a Redis restart or an idle
timeout does not fail the next write. A server still loading its data after a restart answers
LOADING without running anything: every call waits that out (up to its timeout) and runs then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import cache
from importlib.resources import files
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentqueue.backends.redis.keys import Keys, RedisOptions, check_prefix
from agentqueue.errors import (
    AgentQueueError,
    BackendUnavailable,
    ConfigError,
    DependencyInvalid,
    StoreFull,
)

T = TypeVar("T")

DURABLE_SCRIPTS = ("suspend", "resume", "create_token", "complete_token", "expire_tokens")
"""Scripts of waits and tokens: `_durable.lua` (their shared helpers) is prepended to them too."""

FLOW_SCRIPTS = ("finish", "rescue", "cancel", "suspend", "retry")
"""Scripts that end (or retry) jobs: `_flow.lua` (dependents, dead letters) is prepended."""

INSERT_SCRIPTS = ("insert", "cron_fire", *FLOW_SCRIPTS)
"""Scripts that insert jobs (a dead letter too): `_insert.lua` (storing one new job) is
prepended to them."""

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
    "output",
    "save_step",
    "read_tokens",
    "purge",
    *DURABLE_SCRIPTS,
    "cron_put",
    "cron_remove",
    "cron_fire",
    "read_cron_due",
    "limit_update",
    "limit_remove",
    "worker_beat",
    "api_key_put",
    "api_key_revoke",
    "audit_write",
    "read_finished",
)


POOL_SIZE = 50
"""Connections per store and process; more concurrent calls wait for one (up to 20 s)."""
SPARE_CONNECTIONS = 8
"""Connections of `POOL_SIZE` kept aside for the script calls (enqueue, claim, finish) between
calls; the rest serve everything else."""
CALL_TIMEOUT = 5.0
"""Longest a store call may take, waiting for a free connection included, unless the caller's
own client (`Queue(redis_client)`) sets another `socket_timeout` (None: no bound)."""


LOADING_PAUSE = (0.02, 0.5)
"""First and longest pause between tries while the server answers LOADING (it doubles)."""


class _Loading(BackendUnavailable):
    """The server answered LOADING: it is reading its data back after a start and ran nothing."""


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


class Script:
    """A script as a Redis function: its library's text and the function's name (FCALL runs
    it; FUNCTION LOAD when the server lacks it)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.function = source.split("\n", 1)[0].removeprefix("#!lua name=")


def _missing(reply: Any) -> bool:
    """Whether a reply says the server has no such function (a restart, FUNCTION FLUSH, first
    use on this server): then nothing ran."""
    return isinstance(reply, ResponseError) and str(reply).startswith("Function not found")


# redis-py before 5.3 wants a command name to hand out a connection; later ones warn about it.
_NAMED_GET = (
    inspect.signature(aioredis.BlockingConnectionPool.get_connection)
    .parameters["command_name"]
    .default
    is inspect.Parameter.empty
)


class ScriptRefused(AgentQueueError):
    """A script refused a change: `reason` is `not_found`, `invalid` or `name_taken`.

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
    """Return a script's Redis function library: the shared helpers, the script's own helper
    files, then its body as the callback of one function (named by `function_name`).

    Everything but the body is defined once, when the library is loaded, instead of on every
    call as an EVAL script's prelude is (a one-job insert's server time: 147 -> 133 µs).
    """
    folder = files("agentqueue.backends.redis").joinpath("scripts")
    # In this order: a file may use the helpers of those before it (_flow.lua inserts dead
    # letters with _insert.lua's).
    wanted = [
        ("_lib", True),
        ("_insert", name in INSERT_SCRIPTS),
        ("_flow", name in FLOW_SCRIPTS),
        ("_durable", name in DURABLE_SCRIPTS),
    ]
    helpers = [
        folder.joinpath(f"{helper}.lua").read_text(encoding="utf-8")
        for helper, used in wanted
        if used
    ]
    body = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    # Without `allow-oom`, Redis refuses a whole writing function when out of memory (instead of
    # failing between two of its writes); readers say `no-writes`, so they may run on replicas.
    # A writing body's gathered index writes are written after it (`flush_gathered`), then
    # `announce()` publishes the newest event id it wrote, if any, for the change watchers
    # (events.py).
    reads = name.startswith("read_")
    code = "\n".join(
        [
            *helpers,
            "local function body(KEYS, ARGV)",
            body,
            "end",
            "local function run(keys, args)",
            "  begin(keys)",
            "  local reply = body(keys, args)",
            *([] if reads else ["  flush_gathered()", "  announce()"]),
            "  return reply",
            "end",
        ]
    )
    function = function_name(name, code)
    flags = "'no-writes'" if reads else ""
    return (
        f"#!lua name={function}\n{code}\n"
        f"redis.register_function{{function_name = '{function}', callback = run, "
        f"flags = {{{flags}}}}}\n"
    )


def function_name(script: str, code: str) -> str:
    """The name of a script's Redis function (and of its library): the script's name and a
    hash of its code, so processes running other versions of agentqueue on the same server
    each call their own."""
    digest = hashlib.sha1(code.encode("utf-8")).hexdigest()[:16]
    return f"agentqueue_{script}_{digest}"


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
        self.timeout: float | None = CALL_TIMEOUT
        """The bound of each call (see `CALL_TIMEOUT`)."""
        if options.client_settings is not None:
            self.timeout = options.client_settings[1].get("socket_timeout", CALL_TIMEOUT)
        self.redis = self.connect()
        # Connections taken from the pool once and kept for the script calls (`_connection`).
        self._spare: list[Any] = []
        self._scripts = {name: Script(script_source(name)) for name in SCRIPTS}
        self._tag = self.keys.tag.encode()

    def connect(self, *, dedicated: bool = False) -> aioredis.Redis:
        """Return a client with a pool of its own.

        `dedicated` holds one connection (for a subscription, which must not share a connection
        with other commands).

        No socket timeout on any connection: with one, redis-py sends every command through
        `asyncio.wait_for`, a task and two more event-loop turns per command (about 90 µs a call
        on a small machine), and on Python 3.11 that can swallow a cancellation. `run` and `call`
        bound each call instead (`self.timeout`); the subscriber bounds its own reads.
        """
        overrides: dict[str, Any] = {
            "decode_responses": True,
            "retry": Retry(NoBackoff(), 0),
            "socket_timeout": None,
            # Named, so an operator can tell them apart in CLIENT LIST.
            "client_name": f"agentqueue:{self.options.prefix}" + (":watch" if dedicated else ""),
            **_without_maintenance_notifications(),
        }
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

        Straight on a pooled connection (send, read), not through `Redis.execute_command`:
        its retry wrapper, response callbacks and metrics hooks cost about 50 µs of CPU per
        call, and the enqueue and the claim are on the path from `add_job` to a handler.

        Raises:
            BackendUnavailable: Redis cannot be reached or refused the call.
        """
        try:
            return await self._run(script, args)
        except _Loading:
            return await self._once_loaded(lambda: self._run(script, args))

    async def _run(self, script: str, args: Sequence[str | int]) -> Any:
        code = self._scripts[script]
        async with self._connection(self.timeout) as conn:
            await conn.send_packed_command(self._fcall(conn, code, args), False)
            reply = await self._loaded_reply(conn, code, args, await _reply_or_error(conn))
            if isinstance(reply, ResponseError):
                raise reply
            return reply

    @contextlib.asynccontextmanager
    async def _connection(self, bound: float | None) -> AsyncIterator[Any]:
        """A pooled connection for one call of at most `bound` seconds (waiting for the
        connection included); redis-py's errors and the bound become the store's errors.

        Up to `SPARE_CONNECTIONS` connections stay checked out of the pool between calls, on a
        stack: redis-py's checkout and return (a lock, a health check, metrics hooks) cost
        about 100 µs of CPU per call here, a third of a claim's. A connection whose reply was
        not read (an error, a cancellation) was closed by redis-py, which reconnects it on its
        next send; every call reads all of its replies, so none is left for the next user.
        """
        pool = self.redis.connection_pool
        try:
            async with asyncio.timeout(bound):
                if self._spare:
                    conn = await _ready(self._spare.pop())
                else:
                    conn = await (
                        pool.get_connection("FCALL") if _NAMED_GET else pool.get_connection()
                    )
                try:
                    yield conn
                finally:
                    if len(self._spare) < SPARE_CONNECTIONS:
                        self._spare.append(conn)
                    else:
                        await pool.release(conn)
        except RedisError as error:
            raise self.translate(error) from error
        except TimeoutError as error:
            raise self.timed_out() from error

    async def _loaded_reply(
        self, conn: Any, code: Script, args: Sequence[str | int], reply: Any
    ) -> Any:
        """`reply`; or, when it says the server has no such function (nothing ran), load the
        library, run the call again and return that reply."""
        if _missing(reply):
            await self._load(conn, code)
            await conn.send_packed_command(self._fcall(conn, code, args), False)
            reply = await _reply_or_error(conn)
        return reply

    async def run_after_change(
        self,
        script: str,
        args: Sequence[str | int],
        *,
        after: int,
        timeout: float,
        interrupt: asyncio.Event,
    ) -> Any:
        """Run a script once an event newer than `after` is written, `timeout` seconds pass or
        `interrupt` is set, whichever comes first, without a round trip in between.

        One connection gets `CLIENT ID`, `XREAD BLOCK` on the events stream after `after`,
        then the FCALL, in one write. Redis runs a blocked client's next command as soon as
        the read returns: the script starts the moment the event is written, on the server,
        and its reply is the next thing this process reads. `interrupt` unblocks the read
        with `CLIENT UNBLOCK` from a pooled connection, so the script then runs at once;
        nothing is dropped and no reply is left unread. An unblock that arrives late (the
        read had returned; the connection may already wait again) makes a later call return
        early, which its callers allow.

        The script has run once the read returned, whatever happens to this call afterwards:
        a caller cancelled in between loses the reply (the connection is dropped), as with a
        lost reply of `run`.

        Raises:
            BackendUnavailable: Redis cannot be reached or refused the call.
        """

        async def attempt() -> Any:
            code = self._scripts[script]
            block_ms = max(1, round(timeout * 1000))
            bound = None if self.timeout is None else self.timeout + block_ms / 1000
            unblocker: asyncio.Future[None] | None = None
            try:
                async with self._connection(bound) as conn:
                    await conn.send_packed_command(
                        self._wait_then(conn, block_ms, after) + self._fcall(conn, code, args),
                        False,
                    )
                    # Every reply is read even when one is an error: none may be left for the
                    # connection's next user.
                    client_id = await _reply_or_error(conn)
                    if not isinstance(client_id, ResponseError):  # refused: no early unblock
                        unblocker = asyncio.ensure_future(self._unblock_on(interrupt, client_id))
                    # An entry, or nil (timed out, unblocked).
                    read = await _reply_or_error(conn)
                    reply = await self._loaded_reply(conn, code, args, await _reply_or_error(conn))
                    for outcome in (reply, read):
                        if isinstance(outcome, ResponseError):
                            raise outcome
                    return reply
            finally:
                if unblocker is not None:
                    unblocker.cancel()

        try:
            return await attempt()
        except _Loading:
            # Nothing ran; the wait starts again once the server has loaded.
            return await self._once_loaded(attempt)

    def _wait_then(self, conn: Any, block_ms: int, after: int) -> bytes:
        """`CLIENT ID` and `XREAD COUNT 1 BLOCK <ms> STREAMS <events> <after>-0` as RESP."""
        events = self.keys.events.encode(conn.encoder.encoding, conn.encoder.encoding_errors)
        words = [b"XREAD", b"COUNT", b"1", b"BLOCK", b"%d" % block_ms, b"STREAMS", events]
        words.append(b"%d-0" % after)
        parts = [b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n*%d\r\n" % len(words)]
        parts += [b"$%d\r\n%b\r\n" % (len(word), word) for word in words]
        return b"".join(parts)

    async def _unblock_on(self, interrupt: asyncio.Event, client_id: Any) -> None:
        """Once `interrupt` is set, unblock the connection `client_id` (a blocked read)."""
        await interrupt.wait()
        with contextlib.suppress(AgentQueueError):  # if so, the read ends at its own timeout
            await self.call(lambda r: r.client_unblock(int(client_id)))

    def _fcall(self, conn: Any, code: Script, args: Sequence[str | int]) -> bytes:
        """The FCALL command as RESP bytes (redis-py's `pack_command` takes 3x as long)."""
        encoding, errors = conn.encoder.encoding, conn.encoder.encoding_errors
        name = code.function.encode()
        parts = [b"*%d\r\n$5\r\nFCALL\r\n$%d\r\n%b\r\n" % (len(args) + 4, len(name), name)]
        parts.append(b"$1\r\n1\r\n$%d\r\n%b\r\n" % (len(self._tag), self._tag))
        for arg in args:
            data = (arg if type(arg) is str else str(arg)).encode(encoding, errors)
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
        return b"".join(parts)

    @staticmethod
    async def _load(conn: Any, code: Script) -> None:
        """Load a script's library on `conn`. REPLACE: another process may load the same
        library (same name, same text) at the same moment."""
        await conn.send_command("FUNCTION", "LOAD", "REPLACE", code.source)
        await conn.read_response()

    async def call(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run commands that are safe to repeat (reads, idempotent writes) on the pool, once
        more on a fresh connection if the first one dropped.

        Raises:
            BackendUnavailable: Redis cannot be reached or refused a command.
        """
        try:
            return await self._call(work)
        except _Loading:
            return await self._once_loaded(lambda: self._call(work))

    async def _call(self, work: Callable[[Any], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await work(self.redis)
        except BusyLoadingError as error:
            raise self.translate(error) from error
        except (RedisConnectionError, RedisTimeoutError, TimeoutError):
            pass
        except RedisError as error:
            raise self.translate(error) from error
        try:
            async with asyncio.timeout(self.timeout):
                return await work(self.redis)
        except RedisError as error:
            raise self.translate(error) from error
        except TimeoutError as error:
            raise self.timed_out() from error

    async def _once_loaded(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Try `attempt` again, pausing between tries, while the server answers LOADING.

        A restarted Redis accepts connections at once but refuses commands until it has read
        its data back (seconds for a large dataset): a worker or an app starting beside it
        waits, as it would for a slow reply, instead of failing. The bound is `self.timeout`
        (none when that is None).

        Raises:
            BackendUnavailable: still loading at the bound, or any other failure of a try.
        """
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        pause, longest = LOADING_PAUSE
        while True:
            if deadline is not None and time.monotonic() + pause > deadline:
                raise BackendUnavailable(
                    f"Redis at {self.where} is still loading its data after a start "
                    f"({self.timeout} s): nothing was run; try again once it has loaded"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)
            try:
                return await attempt()
            except _Loading:
                continue

    def timed_out(self) -> BackendUnavailable:
        """The error of a call that `self.timeout` cut (redis-py dropped its connection)."""
        return BackendUnavailable(
            f"cannot reach Redis at {self.where}: no reply within {self.timeout} s"
        )

    def translate(self, error: RedisError) -> AgentQueueError:
        """Return the project's error for a redis-py exception."""
        message = str(error)
        if isinstance(error, BusyLoadingError):
            return _Loading(f"Redis at {self.where} is loading its data: {message}")
        if isinstance(error, ResponseError):
            if message.startswith("AQ_DEPENDENCY "):
                _, job_id, status = message.split()[:3]
                return DependencyInvalid(int(job_id), None if status == "missing" else status)
            if message.startswith("AQ_"):
                words = message.split()
                reason = words[0].removeprefix("AQ_").lower()
                status = words[1] if len(words) > 1 and reason == "invalid" else None
                return ScriptRefused(reason, status)
            # redis-py raises OutOfMemoryError with the "OOM" code stripped from the message;
            # an error raised inside a script keeps it in the text.
            if isinstance(error, OutOfMemoryError) or message.startswith("OOM"):
                return StoreFull(
                    f"Redis at {self.where} is out of memory (maxmemory reached); nothing "
                    f"was written: {message}"
                )
            return BackendUnavailable(f"Redis at {self.where} refused the command: {message}")
        return BackendUnavailable(f"cannot reach Redis at {self.where}: {message}")

    async def other_libraries(self) -> list[str]:
        """The agentqueue function libraries on the server that this version does not call:
        those of other versions (each version's are named by its code's hash). They cost the
        server some memory until deleted, and only their own versions' processes use them.

        Raises:
            BackendUnavailable: Redis cannot be reached.
        """
        ours = {script.function for script in self._scripts.values()}
        found = await self.call(lambda r: r.function_list(library="agentqueue_*"))
        names = (dict(zip(entry[::2], entry[1::2], strict=True))["library_name"] for entry in found)
        return sorted(name for name in names if name not in ours)

    async def close(self) -> None:
        """Close the pool's connections."""
        spare, self._spare = self._spare, []
        for conn in spare:
            await self.redis.connection_pool.release(conn)
        await self.redis.aclose()


async def _ready(conn: Any) -> Any:
    """`conn`, disconnected first if the server closed it while it was idle (an operator's
    CLIENT KILL, a `timeout` setting, a restart): its next send then reconnects, where a send on
    the dead socket would fail the call. As the pool checks each connection it hands out."""
    if conn.is_connected:
        try:
            stale = await conn.can_read()  # nothing may be waiting: every reply was read
        except (RedisError, OSError):
            stale = True
        if stale:
            await conn.disconnect(nowait=True)
    return conn


async def _reply_or_error(conn: Any) -> Any:
    """Read one reply; an error reply is returned (the connection stays usable), not raised."""
    try:
        return await conn.read_response()
    except ResponseError as error:
        return error


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
