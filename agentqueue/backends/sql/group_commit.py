"""Group commit for the SQLite writer thread: writes that queued up commit together.

With `synchronous=FULL` every commit waits for an fsync, and SQLite's writes run one after
another on the writer thread, so concurrent callers (an API serving many clients, a worker's
acks beside enqueues) each wait for all the fsyncs queued before theirs. Here each write waits
in a queue; the writer thread takes every write waiting when it gets to them and runs them in
one transaction, each in a savepoint of its own, and commits once: one fsync for all.

Each caller gets the answer it would have had alone:

* its result only after the commit that holds its writes returned (durability unchanged);
* its own exception, with its writes rolled back to its savepoint and the others kept, when
  its work raises (a job not found, a state that refuses a change);
* when the database itself fails inside the shared transaction (a database error in a work,
  a failed commit), the whole transaction is rolled back and every write runs again alone, so
  errors keep their single-write meaning.

A write that waits alone runs exactly as before: one transaction, no savepoint.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import sqlite3
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from agentqueue.backends.sql.backend import T, Work

MAX_BATCH = 256
"""Most writes one transaction takes (bounds how long it holds the write lock)."""

_Waiting = tuple[Work[Any], concurrent.futures.Future[Any]]


class GroupCommit:
    """The queue of writes for one writer thread, and the loop that commits them together."""

    def __init__(self, writer: concurrent.futures.Executor, run: Callable[[Work[Any]], Any]):
        """`writer`: the single-thread executor; `run(work)`: one write transaction (with the
        store's busy waits and error translation), run on that thread."""
        self._writer = writer
        self._run = run
        self._waiting: collections.deque[_Waiting] = collections.deque()

    async def write(self, work: Work[T]) -> T:
        """Run `work` in a write transaction, committed together with the writes waiting
        beside it; return its result once that commit returned."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._waiting.append((work, future))  # deque appends and pops are thread-safe
        self._writer.submit(self._drain)
        return await asyncio.wrap_future(future)

    def _drain(self) -> None:
        """On the writer thread: take the writes waiting now (the calls that find none were
        taken by an earlier one) and commit them."""
        batch: list[_Waiting] = []
        while self._waiting and len(batch) < MAX_BATCH:
            work, future = self._waiting.popleft()
            if future.set_running_or_notify_cancel():  # False: its caller was cancelled
                batch.append((work, future))
        if len(batch) == 1:
            self._alone(*batch[0])
        elif batch:
            self._together(batch)

    def _alone(self, work: Work[Any], future: concurrent.futures.Future[Any]) -> None:
        try:
            future.set_result(self._run(work))
        except BaseException as error:  # the caller gets it, whatever it is
            future.set_exception(error)

    def _together(self, batch: list[_Waiting]) -> None:
        def works(conn: sa.Connection) -> list[tuple[bool, Any]]:
            return [_in_savepoint(conn, work) for work, _ in batch]

        try:
            outcomes = self._run(works)
        except Exception:
            # The database failed in the shared transaction (rolled back): each write alone
            # gets exactly the answer or error it would have had.
            for work, future in batch:
                self._alone(work, future)
            return
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


def _in_savepoint(conn: sa.Connection, work: Work[Any]) -> tuple[bool, Any]:
    """(True, result) of `work` in a savepoint, or (False, its error) with its writes undone.
    A database error is raised: it ends the shared transaction.

    The savepoint statements go to the sqlite3 connection itself: through SQLAlchemy's nested
    transactions they cost as much as a small write's own statements."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("SAVEPOINT aq_write")
    try:
        value = work(conn)
    except (sa_exc.DBAPIError, sqlite3.Error):
        raise
    except Exception as error:
        raw.execute("ROLLBACK TO aq_write")
        raw.execute("RELEASE aq_write")
        return False, error
    raw.execute("RELEASE aq_write")
    return True, value
