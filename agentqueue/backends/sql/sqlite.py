"""The SQLite store: WAL, `BEGIN IMMEDIATE` writes, one writer thread per process, wake-ups.

SQLite allows one writer at a time. In one process, every write transaction runs on one
dedicated writer thread (stdlib sqlite3 through SQLAlchemy Core): writers queue there instead of
spinning in SQLite's busy handler, and a whole transaction costs one thread hop, not one per
statement (the per-call hop of an async driver costs more than the WAL fsync; see
docs/architecture.md). Writes that queued up while the writer was busy commit together, each
in a savepoint of one transaction (`group_commit.py`): one fsync for all of them. Reads run on
a small pool of reader threads. Across processes, `BEGIN IMMEDIATE` takes the write lock up
front (a deferred transaction that upgrades later can fail with SQLITE_BUSY that no busy
handler retries) and `busy_timeout` absorbs the wait.

SQLite has no notification channel. A watcher thread reads `PRAGMA data_version` (a counter that
changes when another connection commits: a few microseconds, no table read) and wakes waiting
tasks; commits from this process wake them at once. On Linux it sleeps on inotify until one of
the database's files is written (`file_watch.py`), elsewhere it polls every `poll_interval`.

`memory://` (or `sqlite:///:memory:`) is the same store on one private in-memory database, for
tests and demos: every operation runs on its single connection, on the one writer thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.pool import QueuePool, StaticPool

from agentqueue.backends.base import Capabilities, Outcome
from agentqueue.backends.signal import ChangeSignal
from agentqueue.backends.sql import consume
from agentqueue.backends.sql.backend import SqlBackend, T, Work
from agentqueue.backends.sql.file_watch import FileWatch
from agentqueue.backends.sql.group_commit import GroupCommit
from agentqueue.backends.sql.transactions import always
from agentqueue.errors import BackendUnavailable, ConfigError, StoreFull
from agentqueue.models import Job

logger = logging.getLogger(__name__)

# The data_version watcher on inotify (see `SqliteBackend._watch`): the first check after a write
# comes this soon, later ones at doubling intervals up to `_MAX_STEP`, for `_SETTLE` seconds
# after the last write (an fsync under load can take tens of ms); between writes, a check every
# `_SAFETY_CHECK` in case a file event went missing. A commit seen with no file event for
# `_QUIET` seconds is a miss; after `_MISSES_BEFORE_POLLING` of them the watcher polls.
_FIRST_STEP = 0.0001
_MAX_STEP = 0.0005
_SETTLE = 0.05
_SAFETY_CHECK = 0.25
_QUIET = 1.0
_MISSES_BEFORE_POLLING = 3

_SYNCHRONOUS = {"off": "OFF", "normal": "NORMAL", "full": "FULL", "extra": "EXTRA"}


@dataclass(frozen=True, slots=True)
class SqliteOptions:
    """Settings read from a `sqlite:///path?option=value` URL."""

    path: str | None
    """File path; None for the in-memory store."""
    synchronous: str = "FULL"
    """SQLite's `synchronous` pragma. FULL (default) survives power loss; NORMAL survives a
    process crash and is several times faster for single enqueues (see docs/architecture.md)."""
    busy_timeout_ms: int = 10_000
    pool_size: int = 5
    poll_interval: float = 0.002


def parse_url(url: str) -> SqliteOptions:
    """Read a `sqlite:///…`, `sqlite:///:memory:` or `memory://` URL.

    Raises:
        ConfigError: unknown option or bad value.
    """
    if url.startswith("memory://"):
        return SqliteOptions(path=None)
    parts = urlsplit(url)
    if parts.scheme not in ("sqlite", "sqlite+aiosqlite") or parts.netloc:
        raise ConfigError(
            f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    options: dict[str, Any] = {}
    for key, value in query.items():
        if key == "synchronous":
            if value.lower() not in _SYNCHRONOUS:
                raise ConfigError(
                    f"synchronous must be one of {sorted(_SYNCHRONOUS)}, not {value!r}"
                )
            options["synchronous"] = _SYNCHRONOUS[value.lower()]
        elif key in ("busy_timeout", "pool_size"):
            if not value.isdigit():
                raise ConfigError(f"{key} must be a whole number, not {value!r}")
            options["busy_timeout_ms" if key == "busy_timeout" else key] = int(value)
        elif key == "poll_interval":
            try:
                options[key] = float(value)
            except ValueError:
                raise ConfigError(f"poll_interval must be seconds, not {value!r}") from None
        else:
            raise ConfigError(
                f"unknown SQLite URL option {key!r} "
                "(known: synchronous, busy_timeout, pool_size, poll_interval)"
            )
    if not path or path == ":memory:":
        return SqliteOptions(path=None, **options)
    return SqliteOptions(path=path, **options)


class _HintingCompiler(SQLiteCompiler):
    """Renders `with_hint(table, "INDEXED BY …", dialect_name="sqlite")`, which SQLAlchemy's
    SQLite compiler ignores; the claim needs it (see `consume.claim_statement`)."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        return text


class SqliteBackend(SqlBackend):
    """The SQLite store (file or in-memory); see the module docstring."""

    def __init__(self, options: SqliteOptions) -> None:
        self.options = options
        self.memory = options.path is None
        if options.path is not None:
            parent = Path(options.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise ConfigError(
                    f"cannot create SQLite database {options.path!r}: "
                    f"folder {str(parent)!r} does not exist"
                )
            self.engine = sa.create_engine(
                f"sqlite:///{options.path}",
                poolclass=QueuePool,
                pool_size=options.pool_size,
                max_overflow=options.pool_size,
                connect_args={"check_same_thread": False},
            )
        else:
            self.engine = sa.create_engine(
                "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        self.capabilities = Capabilities(
            # Your own SQLAlchemy connection on the same file can enqueue in its transaction;
            # nobody else can reach the in-memory database.
            transactional_enqueue=not self.memory,
            cross_process_wakeup=not self.memory,
            durable=not self.memory,
        )
        self.engine.dialect.statement_compiler = _HintingCompiler
        self._write_engine = self.engine.execution_options(aq_write=True)
        self._start_threads()
        self._writer_conn: sa.Connection | None = None
        self._signal = ChangeSignal()
        self._watcher: threading.Thread | None = None
        self._file_watch: FileWatch | None = None
        # Write transactions this process's writer began (only its thread writes it), the
        # count the watcher last saw, commits the watcher saw that none of them explain (only
        # its thread writes those), and that count as the last claim acted on it: see
        # `_watch_versions` and `_probe_before_claim`.
        self._own_writes = 0
        self._own_writes_seen = 0
        self._foreign_commits = 0
        self._claimed_after = 0
        self._skipping_pays = True
        self._stop_watcher = threading.Event()
        event.listen(self.engine, "connect", self._on_connect)
        event.listen(self.engine, "begin", self._on_begin)

    def _start_threads(self) -> None:
        self._closed = False
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="agentqueue-sqlite-writer")
        self._group_commit = GroupCommit(self._writer, self._run_write_on)
        # The in-memory database has one connection: reads share the writer's thread.
        self._readers = (
            self._writer
            if self.memory
            else ThreadPoolExecutor(
                self.options.pool_size, thread_name_prefix="agentqueue-sqlite-reader"
            )
        )

    async def open(self, *, migrate: bool = False) -> None:
        """See `Backend.open`. A closed store opens again (a script may run one queue in
        several `asyncio.run` calls); `close` stopped its threads, so they start anew. An
        in-memory store starts empty again: its database went with its connection."""
        if self._closed:
            self._start_threads()
        await super().open(migrate=migrate)

    @classmethod
    def from_url(cls, url: str) -> SqliteBackend:
        """Build the store from a URL (see `parse_url`)."""
        return cls(parse_url(url))

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so `_on_begin` decides how each one starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not self.memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={self.options.synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={self.options.busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @staticmethod
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("aq_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    async def _write(self, work: Work[T], *, changed: Callable[[T], bool] = always) -> T:
        if self.memory:  # no commit to share: nothing is flushed to disk
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._writer, self._run_write, work)
        else:
            result = await self._group_commit.write(work)
        if changed(result):
            self._signal.notify()
        return result

    async def finish_and_claim(
        self,
        *,
        worker_id: str,
        outcomes: Sequence[Outcome],
        queue: str | None,
        job_types: Sequence[str] | None,
        limit: int,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> tuple[set[int], list[Job]]:
        """See `FinishesWithClaim.finish_and_claim`: one write transaction on the writer thread,
        outcomes first (a finished job frees its group's and type's slots for the claim);
        writes them all.

        Only SQLite takes acks with its claims: its writes queue on one thread anyway, so one
        transaction instead of two saves a commit (the drain ran 1.55x faster in the harness).
        On PostgreSQL the claim and the acks run on two connections at once, which measured
        faster than one combined statement (3,100 vs 2,430-2,550 jobs/s)."""

        def work(conn: sa.Connection) -> tuple[set[int], list[Job]]:
            at = self._at(conn, now)
            lost = consume.finish(conn, self.dialect, worker_id=worker_id, outcomes=outcomes, at=at)
            claimed = consume.claim(
                conn,
                self.dialect,
                worker_id=worker_id,
                queue=queue,
                job_types=job_types,
                limit=limit,
                lease_seconds=lease_seconds,
                at=at,
            )
            return lost, claimed

        return await self._write(work)

    def _probe_before_claim(self) -> bool:
        """See `SqlBackend._probe_before_claim`: the first claim after another connection
        committed (most likely an enqueue: the reason the worker woke) goes straight to the
        write; a claim woken by this process's own commits, or by the poll, reads first."""
        seen = self._foreign_commits
        if seen == self._claimed_after:
            return True
        self._claimed_after = seen
        return not self._skipping_pays

    def _claimed(self, *, probed: bool, found: bool) -> None:
        """See `SqlBackend._claimed`. Where other processes' commits are mostly not enqueues
        (other workers' claims and outcomes), claims that skip the read find nothing and only
        queue for the write lock: after one such, claims read first again until one finds
        work."""
        if not probed or found:
            self._skipping_pays = found

    async def _write_claim(self, work: Work[list[Job]]) -> list[Job]:
        """See `SqlBackend._write_claim`: with `synchronous` FULL or EXTRA a claim commits at
        NORMAL (in WAL mode: no fsync; safe across a process crash, lost only with the OS or
        the power, and the next FULL commit makes it durable too, the WAL being in order)."""
        if self.memory or self.options.synchronous not in ("FULL", "EXTRA"):
            return await self._write(work, changed=bool)
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self._writer, self._run_write, work, True)
        if found:
            self._signal.notify()
        return found

    def _run_write(self, work: Work[T], relaxed: bool = False) -> T:
        """Run `work` in a write transaction on the writer's connection (`relaxed`: committed
        at `synchronous=NORMAL`)."""
        if not relaxed:
            return self._run_write_on(work)
        raw = self._writer_dbapi()
        raw.execute("PRAGMA synchronous=NORMAL")
        try:
            return self._run_write_on(work)
        finally:
            if self._writer_conn is not None and not self._writer_conn.closed:
                raw.execute(f"PRAGMA synchronous={self.options.synchronous}")

    def _writer_dbapi(self) -> Any:
        """The writer's sqlite3 connection (opened if needed), for pragmas outside a
        transaction (through SQLAlchemy they would begin one)."""
        return self._writer_connection().connection.dbapi_connection

    def _writer_connection(self) -> sa.Connection:
        # The writer thread keeps its connection: a pool checkout per transaction costs about
        # as much as the statements of a small one.
        if self._writer_conn is None or self._writer_conn.closed:
            self._writer_conn = self._write_engine.connect()
            # This connection waits for the write lock itself (below), in steps far finer than
            # SQLite's busy handler, whose sleeps grow to 100 ms while the lock is held ~1 ms.
            self._writer_conn.exec_driver_sql("PRAGMA busy_timeout=0")
            self._writer_conn.commit()
        return self._writer_conn

    def _run_write_on(self, work: Work[T]) -> T:
        conn = self._writer_connection()
        deadline = time.monotonic() + self.options.busy_timeout_ms / 1000
        pause = 0.0002
        while True:
            started = False
            self._own_writes += 1  # before it can commit: see `_watch_versions`
            try:
                with conn.begin():
                    started = True
                    return work(conn)
            except sa_exc.OperationalError as error:
                busy = not started and "locked" in str(error.orig)
                if busy and time.monotonic() < deadline:
                    time.sleep(pause)
                    pause = min(pause * 1.5, 0.002)
                    continue
                if error.connection_invalidated:
                    self._writer_conn = None
                raise self._translate(error) from error
            except sa_exc.DBAPIError as error:
                if error.connection_invalidated:
                    self._writer_conn = None
                raise self._translate(error) from error

    async def _read(self, work: Work[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run, self.engine, work)

    def _run(self, engine: sa.Engine, work: Work[T]) -> T:
        try:
            with engine.begin() as conn:
                return work(conn)
        except sa_exc.DBAPIError as error:
            raise self._translate(error) from error

    def _translate(self, error: sa_exc.DBAPIError) -> Exception:
        message = str(error.orig)
        if "locked" in message or "busy" in message:
            return BackendUnavailable(
                f"SQLite database is locked by another process for longer than "
                f"{self.options.busy_timeout_ms} ms: {message}"
            )
        if "full" in message:  # SQLITE_FULL: "database or disk is full" (or max_page_count)
            return StoreFull(f"SQLite database or disk is full; nothing was written: {message}")
        return BackendUnavailable(f"SQLite error: {message}")

    def change_token(self) -> int:
        """See `Backend.change_token`."""
        if not self.memory and self._watcher is None:
            self._start_watcher()
        return self._signal.generation

    async def wait_for_change(self, timeout: float, since: int | None = None) -> bool:
        """See `Backend.wait_for_change`."""
        if since is None:
            since = self.change_token()
        return await self._signal.wait(timeout, since)

    def _start_watcher(self) -> None:
        self._signal.bind(asyncio.get_running_loop())
        assert self.options.path is not None
        # A fresh event per watcher: one left over from before a close (its join timed out)
        # must stop, not poll on beside the new one.
        self._stop_watcher = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch,
            args=(self.options.path, self._stop_watcher),
            name="agentqueue-sqlite-watch",
            daemon=True,
        )
        self._watcher.start()

    def _watch(self, path: str, stop: threading.Event) -> None:
        """Wake the loop when another connection committed (`PRAGMA data_version` changed).

        Where inotify works, the thread sleeps until one of the database's files is written and
        then checks the version in short, growing steps (a WAL commit becomes visible after its
        last write: after the fsync and the shared-memory index update, which no file event
        reports), with a slow check in between as a safety net; elsewhere it checks every
        `poll_interval`.
        """
        try:
            conn = sqlite3.connect(path, check_same_thread=False)
        except sqlite3.Error:
            return
        target = Path(os.path.abspath(path))
        files = FileWatch.open(
            str(target.parent), [target.name + suffix for suffix in ("", "-wal", "-journal")]
        )
        self._file_watch = files
        try:
            self._watch_versions(conn, files, stop)
        finally:
            self._file_watch = None
            if files is not None:
                files.close()
            conn.close()

    def _watch_versions(
        self, conn: sqlite3.Connection, files: FileWatch | None, stop: threading.Event
    ) -> None:
        poll = self.options.poll_interval
        self._own_writes_seen = self._own_writes
        last = conn.execute("PRAGMA data_version").fetchone()[0]
        # A commit between the caller's change token and this first read is in `last` and
        # would wake no one: wake the waiters once now (a spurious wake-up is allowed). Seen
        # under load: a reopened queue's 10 s wait for another connection's commit timed out.
        self._signal.notify_threadsafe()
        step: float | None = None  # checking closely after a write; None: asleep on inotify
        written_at = 0.0
        misses = 0
        while not stop.is_set():
            if files is None:
                if stop.wait(poll):
                    return
                written = False
            elif step is None:
                written = files.wait(_SAFETY_CHECK)
            else:
                if stop.wait(step):
                    return
                written = files.drain()
            now = time.monotonic()
            if written:
                step, written_at = _FIRST_STEP, now
            elif step is not None:
                step = None if now - written_at > _SETTLE else min(step * 2, _MAX_STEP, poll)
            own = self._own_writes  # read first: a write begun after it may look foreign
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                continue
            if version == last:
                continue
            last = version
            if own == self._own_writes_seen:  # no write of ours since the last change seen
                self._foreign_commits += 1
            self._own_writes_seen = own
            self._signal.notify_threadsafe()
            if files is not None and now - written_at > _QUIET:
                # A commit no file event announced: this file system may not report other
                # processes' writes (a network or FUSE mount). After a few, poll instead.
                misses += 1
                if misses >= _MISSES_BEFORE_POLLING:
                    logger.info(
                        "no file events for %s: polling data_version instead", self.options.path
                    )
                    files.close()
                    files = self._file_watch = None

    def _dispose(self) -> None:
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None
        self.engine.dispose()

    async def close(self) -> None:
        """See `Backend.close`."""
        self._stop_watcher.set()
        if self._file_watch is not None:
            self._file_watch.interrupt()
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.join, 1.0)
            self._watcher = None  # a reopened store starts its own (on the new loop)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._dispose)
        self._closed = True
        self._writer.shutdown(wait=False)
        if self._readers is not self._writer:
            self._readers.shutdown(wait=False)
