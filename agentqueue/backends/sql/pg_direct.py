"""PostgreSQL's hottest statements on raw asyncpg connections.

Enqueue, claim and complete are one statement each (`pg_statements`). Through SQLAlchemy's
`AsyncEngine` each call also pays a pool checkout and return, an isolation-level change, a
greenlet hop and the result machinery: measured at about a third of an enqueue's CPU time, and
a single enqueue is CPU-bound here (the round trip and the WAL flush take the rest). These
statements therefore run on asyncpg pools of their own, as prepared statements, with the SQL
that SQLAlchemy compiles once from the same statement objects, so the two paths cannot drift
apart; every other operation stays on the engine.

Only a store that opened its own engine (from a URL) has these pools; a store given the
caller's `AsyncEngine` keeps every statement on that engine.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

from agentqueue.backends.sql.pg_startup import connect_patiently

_DIALECT = asyncpg_dialect.dialect()
# Options of SQLAlchemy's asyncpg adapter that asyncpg itself does not take.
_ADAPTER_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback")


_CLOSE_TIMEOUT = 5.0  # seconds to wait for connections in use before closing them anyway


After = Callable[[Sequence[Any]], "tuple[DirectStatement, Mapping[str, Any]]"]
"""Builds the statement that follows another in its transaction, from the first one's rows."""


class DirectError(Exception):
    """A direct statement failed: on the server (`sqlstate` says why), or it never got an
    answer (`sqlstate` None: the server is unreachable or the connection broke)."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DirectStatement:
    """A SQLAlchemy statement compiled once for asyncpg: its SQL text, and how to turn named
    parameters into asyncpg's positional ones (literals compiled into parameters keep their
    compiled values)."""

    def __init__(self, statement: sa.ClauseElement) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self._names: list[str] = list(compiled.positiontup or ())
        self._defaults: dict[str, Any] = {name: bind.value for name, bind in compiled.binds.items()}

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `params` (by bind parameter name)."""
        return [params[name] if name in params else self._defaults[name] for name in self._names]


async def _json_codecs(connection: Any) -> None:
    # JSON in and out as Python values, as SQLAlchemy's JSON types give them.
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(
            kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


def connection_gone(sqlstate: str | None) -> bool:
    """Whether a server error means the connection is gone: a connection exception (08) or
    the server shutting down or restarting (57P01-57P03)."""
    return sqlstate is not None and (sqlstate.startswith("08") or sqlstate.startswith("57P0"))


class DirectPool:
    """Raw asyncpg connections on the engine's database and schema, opened on demand (none at
    start) and kept for reuse, at most `max_size` open at once.

    Not asyncpg's own `Pool`: its checkout and return (a holder object, a timeout scope, a
    shielded task and a reset per return) cost about 100 µs of CPU per statement here, as much
    as the statement itself, and enqueue, claim and complete are CPU-bound. This pool is a
    stack of idle connections: taking one is a `pop`, giving it back an `append` (or a hand-over
    to the first waiter). A connection is reused only after its statement ended normally (or
    with a server error that left it usable); after anything else (a broken connection, a
    cancellation mid-statement) it is cut, so no half-read reply is ever seen by the next user.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_size: int,
        server_settings: dict[str, str],
        server_pids: set[int] | None = None,
        where: str = "",
    ) -> None:
        """`server_pids`: kept up to date with the server process ids of this pool's open
        connections (a NOTIFY names the process that sent it). `where`: the server, for
        messages."""
        _args, options = engine.dialect.create_connect_args(engine.url)
        if options.get("prepared_statement_cache_size") == 0:
            options["statement_cache_size"] = 0  # e.g. behind a pooler in transaction mode
        for key in _ADAPTER_ONLY:
            options.pop(key, None)
        self._options = options
        self._max_size = max_size
        self._server_settings = server_settings
        self._server_pids = server_pids if server_pids is not None else set()
        self._where = where
        self._idle: list[Any] = []  # most recently used last: the warmest is taken first
        self._open: set[Any] = set()  # idle or in use
        self._connecting = 0
        # Callers waiting for a connection; each gets one, or None: "open one yourself" (a
        # connection was cut, so there is room for a new one).
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._drained: asyncio.Event | None = None  # set by close() while it waits

    async def _acquire(self) -> Any:
        while True:
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():
                    return connection
                self._open.discard(connection)
            if len(self._open) + self._connecting < self._max_size:
                return await self._connect()
            waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                connection = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self._release(waiter.result())  # handed over as this caller gave up
                raise
            if connection is not None:
                return connection

    async def _connect(self) -> Any:
        import asyncpg  # the store checked at start that the extra is installed

        self._connecting += 1
        try:
            # Each new connection waits for a starting server (see pg_startup).
            connection = await connect_patiently(
                lambda: asyncpg.connect(**self._options, server_settings=self._server_settings),
                self._where,
            )
            try:
                await self._prepare(connection)
            except BaseException:
                connection.terminate()
                raise
        finally:
            self._connecting -= 1
        self._open.add(connection)
        return connection

    async def _prepare(self, connection: Any) -> None:
        await _json_codecs(connection)
        pid = connection.get_server_pid()
        self._server_pids.add(pid)
        # Called when the connection closes or is lost, so a pid the server hands to another
        # client later is never mistaken for one of ours.
        connection.add_termination_listener(lambda _connection: self._server_pids.discard(pid))

    def _release(self, connection: Any) -> None:
        """Give a connection back after a statement that ended cleanly."""
        if self._drained is not None or connection.is_closed():
            self._cut(connection)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _cut(self, connection: Any) -> None:
        """Close a connection that may hold an unread reply, and make room for a new one."""
        if not connection.is_closed():
            connection.terminate()
        self._open.discard(connection)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        if self._drained is not None and not self._open:
            self._drained.set()

    def _cut_idle(self) -> None:
        """Cut every idle connection: one broke, so the server probably dropped them all (a
        restart); the next calls connect afresh instead of failing one by one."""
        idle, self._idle = self._idle, []
        for connection in idle:
            self._cut(connection)

    async def fetch(
        self,
        statement: DirectStatement,
        params: Mapping[str, Any],
        *,
        after: After | None = None,
    ) -> Sequence[Mapping[str, Any]]:
        """Run `statement` in autocommit (it is its own transaction) and return its rows.

        `after(rows)`: a second statement and its parameters, built from the first one's rows;
        both then run in one transaction (e.g. an audit record naming the new ids).

        Raises:
            DirectError: the server refused a statement or could not be reached.
        """
        import asyncpg

        # A connection the server cut mid-exchange (a restart) can also leave asyncpg refusing
        # the next statement on it (InternalClientError).
        broken = (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)
        try:
            connection = await self._acquire()
        except asyncpg.PostgresError as error:
            raise DirectError(str(error), getattr(error, "sqlstate", None)) from error
        except broken as error:
            raise DirectError(str(error) or type(error).__name__, None) from error
        reusable = False
        try:
            if after is None:
                rows = await connection.fetch(statement.sql, *statement.arguments(params))
            else:
                async with connection.transaction():
                    rows = await connection.fetch(statement.sql, *statement.arguments(params))
                    second, second_params = after(rows)
                    await connection.execute(second.sql, *second.arguments(second_params))
            reusable = True
            return rows
        except asyncpg.PostgresError as error:
            sqlstate = getattr(error, "sqlstate", None)
            if connection_gone(sqlstate):
                self._cut_idle()  # e.g. a server restart: the rest are dead too
            else:
                reusable = True  # refused, rolled back: the connection itself is fine
            raise DirectError(str(error), sqlstate) from error
        except broken as error:
            self._cut_idle()
            raise DirectError(str(error) or type(error).__name__, None) from error
        finally:
            # Anything else (a cancellation mid-statement) may leave a reply unread: cut it.
            if reusable:
                self._release(connection)
            else:
                self._cut(connection)

    async def close(self) -> None:
        """Close the connections (a later `fetch` opens new ones); connections still in use
        get a few seconds to finish their statement, then are cut."""
        idle, self._idle = self._idle, []
        for connection in idle:
            self._open.discard(connection)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), _CLOSE_TIMEOUT)
            self._cut(connection)  # if the polite close failed
        if self._open:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), _CLOSE_TIMEOUT)
            for connection in list(self._open):
                self._cut(connection)
        self._drained = None
