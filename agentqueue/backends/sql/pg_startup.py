"""Connecting to a PostgreSQL server that is still starting up.

A server that was just started, restarted, or is replaying its WAL after a crash accepts TCP
connections at once but refuses sessions with SQLSTATE 57P03 (`cannot_connect_now`: "the
database system is starting up", "... is not yet accepting connections") until it is ready:
seconds after a crash, longer for a big WAL. A worker or an app started beside it should wait,
as it would for a slow reply, instead of failing its first call. Every connection the store
makes (its two engines, its direct pools) goes through here and tries again with short pauses,
up to `STARTUP_WAIT`; retrying is safe because a refused session ran nothing. Other failures
(refused TCP, a bad password, an unknown database) fail at once, as before.

The LISTEN connection has its own reconnect loop (it polls meanwhile); a caller's own engine
(`Queue(engine)`) connects the way its owner set it up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from agentqueue.errors import BackendUnavailable

T = TypeVar("T")

STARTUP_WAIT = 5.0
"""Longest a new connection waits for a starting server, in seconds."""
PAUSE = (0.02, 0.5)
"""First and longest pause between tries (it doubles)."""
CANNOT_CONNECT_NOW = "57P03"


def starting_up(error: BaseException) -> bool:
    """Whether a failed connect is the server refusing sessions while it starts (or stops)."""
    state = getattr(error, "sqlstate", None) or getattr(error.__cause__, "sqlstate", None)
    return state == CANNOT_CONNECT_NOW


class Patience:
    """The pauses of one connect while the server starts up, up to `STARTUP_WAIT`."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.deadline = time.monotonic() + STARTUP_WAIT
        self.pause = PAUSE[0]

    def pause_after(self, error: Exception) -> float:
        """The seconds to pause before trying again after `error`.

        Raises:
            error: it is not the server starting up.
            BackendUnavailable: the server is still starting up at the bound.
        """
        if not starting_up(error):
            raise error
        left = self.deadline - time.monotonic()
        if left <= 0:
            said = str(error).splitlines()[0]  # one line: the server's DETAIL stays in the cause
            raise BackendUnavailable(
                f"PostgreSQL at {self.where} is still starting up after {STARTUP_WAIT:g} s "
                f"({said}); nothing was run: try again once it accepts connections"
            ) from error
        pause = min(self.pause, left)  # the last try comes at the bound
        self.pause = min(self.pause * 2, PAUSE[1])
        return pause


async def connect_patiently(connect: Callable[[], Awaitable[T]], where: str) -> T:
    """`await connect()`, tried again while the server is starting up (see `Patience`)."""
    patience = Patience(where)
    while True:
        try:
            return await connect()
        except Exception as error:
            pause = patience.pause_after(error)
        await asyncio.sleep(pause)


def wait_out_startup(engine: AsyncEngine, where: str) -> None:
    """Make each new connection of `engine` (one the store made) wait for a starting server.

    SQLAlchemy connects inside its greenlet, synchronously: the pause is awaited from there
    (`await_only`), so the event loop keeps running meanwhile.
    """

    @event.listens_for(engine.sync_engine, "do_connect")
    def connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:  # pyright: ignore[reportUnusedFunction]
        patience = Patience(where)
        while True:
            try:
                return dialect.connect(*cargs, **cparams)
            except Exception as error:
                pause = patience.pause_after(error)
            await_only(asyncio.sleep(pause))
