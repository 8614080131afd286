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


async def _keep_as_is(_connection: Any) -> None:
    # asyncpg resets a connection on its way back to the pool (a round trip: unlisten, reset
    # settings, release advisory locks). These connections only ever run single autocommit
    # statements that change no session state, so there is nothing to reset.
    return None


class DirectPool:
    """A lazily opened asyncpg pool on the engine's database and schema (connections are
    made on demand, none is held idle at start)."""

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
        self._pool: Any = None  # an asyncpg.Pool once opened
        self._opening: asyncio.Lock | None = None

    async def _opened(self) -> Any:
        if self._pool is not None:
            return self._pool
        # One pool however many first calls arrive at once, should creating it ever wait (with
        # min_size=0 asyncpg makes no connection then; the lock is made on the loop using it).
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                import asyncpg  # the store checked at start that the extra is installed

                def connect(*args: Any, **options: Any) -> Any:
                    # Each new connection waits for a starting server (see pg_startup).
                    return connect_patiently(lambda: asyncpg.connect(*args, **options), self._where)

                self._pool = await asyncpg.create_pool(
                    connect=connect,
                    min_size=0,
                    max_size=self._max_size,
                    server_settings=self._server_settings,
                    init=self._prepare,
                    reset=_keep_as_is,
                    **self._options,
                )
        return self._pool

    async def _prepare(self, connection: Any) -> None:
        await _json_codecs(connection)
        pid = connection.get_server_pid()
        self._server_pids.add(pid)
        # Called when the connection closes or is lost, so a pid the server hands to another
        # client later is never mistaken for one of ours.
        connection.add_termination_listener(lambda _connection: self._server_pids.discard(pid))

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
        pool = None
        try:
            pool = await self._opened()
            async with pool.acquire() as connection:
                if after is None:
                    return await connection.fetch(statement.sql, *statement.arguments(params))
                async with connection.transaction():
                    rows = await connection.fetch(statement.sql, *statement.arguments(params))
                    second, second_params = after(rows)
                    await connection.execute(second.sql, *second.arguments(second_params))
                return rows
        except asyncpg.PostgresError as error:
            sqlstate = getattr(error, "sqlstate", None)
            if pool is not None and connection_gone(sqlstate):
                await pool.expire_connections()  # e.g. a server restart: the rest are dead too
            raise DirectError(str(error), sqlstate) from error
        except broken as error:
            if pool is not None:
                await pool.expire_connections()
            raise DirectError(str(error) or type(error).__name__, None) from error

    async def close(self) -> None:
        """Close the pool's connections (a later `fetch` opens a new pool); connections
        still in use get a few seconds, then are cut."""
        pool, self._pool = self._pool, None
        self._opening = None  # a reopened store may run on another event loop
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT)
        except TimeoutError:
            pool.terminate()
