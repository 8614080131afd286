"""The PostgreSQL store: the shared SQL store over SQLAlchemy's async engine and asyncpg.

- Transactions run the same functions as SQLite through `AsyncConnection.run_sync`.
- Claims lock rows with `FOR UPDATE SKIP LOCKED`, so workers on many machines never wait for
  each other's rows; fence checks and operator changes lock with plain `FOR UPDATE`, in id order.
- Times come from the database clock: the offset between this process and the server is
  measured at open and every few minutes, so no transaction pays a round trip to read it.
- Wake-ups: the commit trigger of `aq_job_events` (migration 0003) sends `NOTIFY agentqueue,
  '<schema>'` with every commit that writes events; one dedicated connection LISTENs, re-LISTENs
  after a reconnect, and while it cannot, waiters are woken every `fallback_poll` seconds so
  work is still found.
- The event feed follows (commit number, event id): see migration 0003 for why.
- An optional schema (`?schema=jobs`) isolates one app's tables; it is created by `migrate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from agentqueue.backends.base import Capabilities, InsertJob, InsertResult, Outcome, OutcomeKind
from agentqueue.backends.signal import ChangeSignal
from agentqueue.backends.sql import migrations, pg_statements
from agentqueue.backends.sql.admin_store import insert_audit
from agentqueue.backends.sql.backend import SqlBackend, T, Work
from agentqueue.backends.sql.dialect import SqlDialect
from agentqueue.backends.sql.pg_direct import (
    DirectError,
    DirectPool,
    DirectStatement,
    connection_gone,
)
from agentqueue.backends.sql.pg_startup import wait_out_startup
from agentqueue.backends.sql.rows import job_from_row, job_from_values
from agentqueue.backends.sql.tables import audit as audit_table
from agentqueue.backends.sql.tables import event_commits, job_events, jobs
from agentqueue.backends.sql.tables import limits as limits_table
from agentqueue.backends.sql.transactions import always, never
from agentqueue.errors import (
    BackendUnavailable,
    ConfigError,
    InvalidArgument,
    MissingExtra,
    StoreFull,
)
from agentqueue.models import AuditRecord, Job, JobEvent, Limit, LimitScope

logger = logging.getLogger(__name__)

CHANNEL = "agentqueue"
_LIMITS_REFRESH = 1.0
"""Seconds a process trusts its view of whether the store has flow limits."""
_DUE_TRUST = 1.0
"""Seconds a claim's report of what is due is trusted (`due_known`), however quiet the LISTEN
connection: a half-open one hears nothing, and a worker's poll must still claim."""
_ROLLED_BACK = {"40001", "40P01"}  # serialization failure, deadlock: the statement undone
_RETRYABLE = _ROLLED_BACK | {"23505"}  # and a unique violation (another writer's key)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CLOCK_REFRESH = 300.0  # seconds between measurements of the server clock's offset
_STATISTICS_CHECK = 10.0  # seconds between looks at the tables' modification counters
_STATISTICS_TABLES = ("aq_jobs", "aq_job_events", "aq_event_commits", "aq_job_tags")
_STALE_ROWS = 1000  # changed rows (beyond 10% of the table) that make its statistics stale

_DIRECT_INSERT = DirectStatement(pg_statements.INSERT)
_DIRECT_CLAIM = DirectStatement(pg_statements.CLAIM_ANY_REPORTING)
_DIRECT_COMPLETE = DirectStatement(pg_statements.COMPLETE)
_DIRECT_GET = DirectStatement(
    sa.select(*jobs.c).where(jobs.c.id == sa.bindparam("job_id", type_=jobs.c.id.type))
)
_DIRECT_AUDIT = DirectStatement(
    audit_table.insert()
    .values({c.name: sa.bindparam(c.name, type_=c.type) for c in audit_table.c if c.name != "id"})
    .returning(audit_table.c.id)
)


def _audit_after(
    audit: Callable[[list[InsertResult]], AuditRecord],
) -> Callable[[Sequence[Any]], tuple[DirectStatement, dict[str, Any]]]:
    """The audit insert that follows a direct job insert in its transaction (the record
    names the new ids, so it is built from the insert's rows)."""

    def after(rows: Sequence[Any]) -> tuple[DirectStatement, dict[str, Any]]:
        record = audit([InsertResult(row[0], created=True) for row in rows])
        return _DIRECT_AUDIT, record.model_dump(exclude={"id"})

    return after


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """Settings read from a `postgresql://…?schema=…&pool_size=…` URL."""

    url: str
    """The connection URL for asyncpg, without agentqueue's own options."""
    schema: str | None = "public"
    """The schema of the tables; None: the connection's current schema (a caller's engine)."""
    pool_size: int = 10
    fallback_poll: float = 0.5


def parse_url(url: str) -> PostgresOptions:
    """Read a PostgreSQL URL; `schema`, `pool_size` and `fallback_poll` are agentqueue's options.

    Raises:
        ConfigError: a malformed URL or option value.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "postgresql+asyncpg") or not parts.netloc:
        raise ConfigError(f"bad PostgreSQL URL {url!r}: use postgresql://user@host:5432/dbname")
    passthrough: list[tuple[str, str]] = []
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "schema":
            if not _SCHEMA_NAME.match(value):
                raise ConfigError(
                    f"schema must be a lowercase SQL identifier (letters, digits, _), not {value!r}"
                )
            options["schema"] = value
        elif key == "pool_size":
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"pool_size must be a whole number ≥ 1, not {value!r}")
            options["pool_size"] = int(value)
        elif key == "fallback_poll":
            try:
                options["fallback_poll"] = float(value)
            except ValueError:
                raise ConfigError(f"fallback_poll must be seconds, not {value!r}") from None
        else:
            passthrough.append((key, value))
    clean = urlunsplit(
        ("postgresql+asyncpg", parts.netloc, parts.path, urlencode(passthrough), parts.fragment)
    )
    return PostgresOptions(url=clean, **options)


class PostgresDialect(SqlDialect):
    """Row locks, the database clock and the commit-ordered event feed of PostgreSQL."""

    name = "postgresql"
    reuses_job_ids = False  # sequences never hand out an id twice

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._measured = -_CLOCK_REFRESH

    def lock(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """`FOR UPDATE SKIP LOCKED`: claimers never wait for each other."""
        return query.with_for_update(skip_locked=True)

    def lock_wait(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """`FOR UPDATE`: wait for the holder (fences and operator changes)."""
        return query.with_for_update()

    def serialize_limited_claims(self, conn: sa.Connection) -> None:
        """A transaction-level advisory lock per schema: claims under flow limits count
        processing jobs and then claim, so two must not count at once."""
        conn.execute(
            sa.select(
                sa.func.pg_advisory_xact_lock(
                    sa.func.hashtext(sa.func.concat("aql:", sa.func.current_schema()))
                )
            )
        )

    def time_bucket(self, column: sa.ColumnElement[Any], seconds: int) -> sa.ColumnElement[int]:
        """`floor(epoch seconds of column / seconds)` of a `timestamptz`."""
        return sa.cast(sa.func.floor(sa.extract("epoch", column) / seconds), sa.BigInteger())

    def notify(self, conn: sa.Connection) -> None:
        """`pg_notify` on the wake-up channel, as the event trigger does (sent at commit)."""
        conn.execute(sa.select(sa.func.pg_notify(CHANNEL, sa.func.current_schema())))

    def now(self, conn: sa.Connection, now: datetime | None) -> datetime:
        """Return `now`, or the server's clock (local clock plus the measured offset)."""
        if now is None and self.offset_stale():
            self.measure(conn)
        return self.current(now)

    def offset_stale(self) -> bool:
        """Whether the server clock's offset is due to be measured again."""
        return time.monotonic() - self._measured > _CLOCK_REFRESH

    def current(self, now: datetime | None) -> datetime:
        """Return `now`, or the server's clock from the last measured offset."""
        return now if now is not None else datetime.now(UTC) + self._offset

    def measure(self, conn: sa.Connection) -> None:
        """Measure the offset of the server's clock from this process's clock."""
        before = datetime.now(UTC)
        server = conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
        after = datetime.now(UTC)
        self._offset = server - (before + (after - before) / 2)
        self._measured = time.monotonic()

    def number_commits(self, conn: sa.Connection) -> None:
        """Number the committed event-writing transactions that have no number yet.

        One numbering runs at a time (a transaction-level advisory lock), and its UPDATE takes
        its snapshot after the lock: a commit it misses becomes visible to the next numbering,
        which gives it a higher number. So numbers follow the order in which commits became
        visible, and a reader that passed number N never finds a new event below N.
        """
        conn.execute(
            sa.select(
                sa.func.pg_advisory_xact_lock(
                    sa.func.hashtext(sa.literal("agentqueue-number:") + sa.func.current_schema())
                )
            )
        )
        conn.execute(
            sa.update(event_commits)
            .where(event_commits.c.seq.is_(None))
            .values(seq=sa.func.nextval("aq_event_seq"))
        )

    def event_feed(self, after: str | None) -> sa.Select[Any]:
        """Events in commit order: (commit number, event id)."""
        query = (
            sa.select(job_events, event_commits.c.seq)
            .join(event_commits, event_commits.c.txid == job_events.c.txid)
            # A commit not numbered yet waits for the next numbering (see number_commits).
            .where(event_commits.c.seq.is_not(None))
        )
        if after:
            seq, _, event_id = after.partition(".")
            if not (seq.isdigit() and event_id.isdigit()):
                raise InvalidArgument(
                    f"bad event cursor {after!r}: pass the cursor of a received event"
                )
            query = query.where(
                sa.tuple_(event_commits.c.seq, job_events.c.id)
                > sa.tuple_(sa.literal(int(seq)), sa.literal(int(event_id)))
            )
        return query.order_by(event_commits.c.seq, job_events.c.id)

    def cursor_of(self, row: sa.Row[Any]) -> str:
        """`<commit number>.<event id>`."""
        return f"{row.seq}.{row.id}"

    def latest_cursor(self, conn: sa.Connection) -> str | None:
        """The cursor of the last event of the last committed event-writing transaction."""
        last = conn.execute(
            sa.select(event_commits.c.seq, event_commits.c.txid)
            .where(event_commits.c.seq.is_not(None))
            .order_by(event_commits.c.seq.desc())
            .limit(1)
        ).first()
        if last is None:
            return None
        event_id = conn.execute(
            sa.select(sa.func.max(job_events.c.id)).where(job_events.c.txid == last.txid)
        ).scalar()
        return f"{last.seq}.{event_id or 0}"

    def insert_ignoring_conflicts(self, table: sa.Table) -> sa.Insert:
        """`INSERT … ON CONFLICT DO NOTHING`; a concurrent insert of the same key waits for the
        other transaction and then does nothing."""
        return postgresql.insert(table).on_conflict_do_nothing()

    def delete_events(self, conn: sa.Connection, where: sa.ColumnElement[bool]) -> int:
        """Delete the events matching `where`, then the commit rows no event references any more.

        The feed joins events to their commit row, so a commit left without events is dead
        weight; a commit that still has events keeps its number, and a cursor stays valid
        whether or not its own event still exists (the feed compares positions, it never looks
        the cursor's event up).

        The check runs after the delete, in a statement of its own (one statement would still
        see the events it deletes), and after locking the commit rows: two purges deleting
        different events of one commit would otherwise each see the other's (uncommitted)
        events and both keep the row. Locked, the second waits, then sees both deletions.
        """
        deleted = sa.delete(job_events).where(where).returning(job_events.c.txid)
        txids = conn.execute(deleted).scalars().all()
        if txids:
            # One array parameter however many transactions: an expanding IN could pass the
            # driver's limit of bind parameters.
            gone = sa.any_(
                sa.bindparam("txids", sorted(set(txids)), type_=postgresql.ARRAY(sa.BigInteger()))
            )
            conn.execute(
                sa.select(event_commits.c.txid)
                .where(event_commits.c.txid == gone)
                .order_by(event_commits.c.txid)  # one lock order: purges never deadlock
                .with_for_update()
            )
            conn.execute(
                sa.delete(event_commits).where(
                    event_commits.c.txid == gone,
                    ~sa.exists().where(job_events.c.txid == event_commits.c.txid),
                )
            )
        return len(txids)


class PostgresBackend(SqlBackend):
    """The PostgreSQL store; see the module docstring."""

    def __init__(self, options: PostgresOptions, engine: AsyncEngine | None = None) -> None:
        try:
            import asyncpg  # noqa: F401  (checked here so a missing extra says how to fix it)
        except ImportError:
            raise MissingExtra(
                "the PostgreSQL store needs asyncpg: pip install 'agentqueue[postgres]'"
            ) from None
        self.options = options
        self.dialect = PostgresDialect()
        self.capabilities = Capabilities(
            transactional_enqueue=True, cross_process_wakeup=True, durable=True
        )
        self.schema = options.schema or "public"
        self._owns_engine = engine is None
        self.engine = engine or create_async_engine(
            options.url,
            pool_size=options.pool_size,
            max_overflow=options.pool_size,
            connect_args={"server_settings": {"search_path": self.schema}},
        )
        # Claims commit without waiting for the WAL flush (see `SqlBackend._write_claim`): a
        # flush costs 1-4 ms here, most of an idle worker's pickup latency. Their own small
        # pool, so the setting never leaks into an enqueue or an outcome.
        self._claim_engine = (
            create_async_engine(
                options.url,
                pool_size=2,
                max_overflow=options.pool_size,
                connect_args={
                    "server_settings": {"search_path": self.schema, "synchronous_commit": "off"}
                },
            )
            if self._owns_engine
            else self.engine
        )
        where = _where(self.engine)
        if self._owns_engine:
            for own in (self.engine, self._claim_engine):
                wait_out_startup(own, where)
        # The hottest statements skip the engine's per-call machinery (see `pg_direct`), on
        # pools of their own with the same settings as the two engines.
        self._direct: DirectPool | None = None
        self._direct_claims: DirectPool | None = None
        # The server pids of the direct pools' connections: their writes wake local waiters at
        # once, so the NOTIFY of each (a claim's, a completion's) is only an echo to ignore.
        self._direct_pids: set[int] = set()
        if self._owns_engine:
            # Named, so an operator (or a test) can tell them apart in pg_stat_activity.
            settings = {"search_path": self.schema, "application_name": f"agentqueue {self.schema}"}
            self._direct = DirectPool(
                self.engine,
                max_size=2 * options.pool_size,
                server_settings=settings,
                server_pids=self._direct_pids,
                where=where,
            )
            self._direct_claims = DirectPool(
                self.engine,
                max_size=2 + options.pool_size,
                server_settings={**settings, "synchronous_commit": "off"},
                server_pids=self._direct_pids,
                where=where,
            )
        self._signal = ChangeSignal()
        self._wrapped: weakref.WeakKeyDictionary[Any, AsyncEngine] = weakref.WeakKeyDictionary()
        self._listener: asyncio.Task[None] | None = None
        self._closed = False
        self._limits_seen = False
        self._limits_checked_at = -_LIMITS_REFRESH
        self._statistics_checked_at = -_STATISTICS_CHECK
        self._listening = False
        self._due_any: _Due | None = None
        """What the last unfiltered direct claim left (see `due_known`)."""

    @classmethod
    def from_url(cls, url: str) -> PostgresBackend:
        """Build the store from a URL (see `parse_url`)."""
        return cls(parse_url(url))

    @classmethod
    def from_engine(cls, engine: AsyncEngine) -> PostgresBackend:
        """Use the caller's engine (never disposed here); tables live in its current schema."""
        url = engine.url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        return cls(PostgresOptions(url=url, schema=None), engine)

    # -- transactions ------------------------------------------------------------------------
    async def _write(
        self,
        work: Work[T],
        *,
        changed: Callable[[T], bool] = always,
        engine: AsyncEngine | None = None,
    ) -> T:
        for attempt in range(1, 6):
            try:
                async with (engine or self.engine).connect() as conn:
                    await conn.begin()
                    try:
                        result = await conn.run_sync(work)
                    except sa_exc.DBAPIError as error:
                        if attempt < 5 and _rerun(error):
                            await asyncio.sleep(0.005 * attempt)
                            continue
                        raise
                    # A failure from here on is ambiguous (the commit may have happened): never
                    # rerun it.
                    await conn.commit()
            except sa_exc.DBAPIError as error:
                raise self._translate(error) from error
            except OSError as error:
                raise BackendUnavailable(f"PostgreSQL unreachable: {error}") from error
            if changed(result):
                self._signal.notify()
            return result
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _read(self, work: Work[T]) -> T:
        # Autocommit: a read needs no BEGIN / ROLLBACK round trips around its statement.
        for attempt in (1, 2):
            try:
                async with self.engine.connect() as conn:
                    auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    return await auto.run_sync(work)
            except sa_exc.DBAPIError as error:
                if attempt == 1 and error.connection_invalidated:
                    continue  # a pooled connection the server dropped (restart): take another
                raise self._translate(error) from error
            except OSError as error:
                raise BackendUnavailable(f"PostgreSQL unreachable: {error}") from error
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _write_claim(self, work: Work[list[Job]]) -> list[Job]:
        """See `SqlBackend._write_claim`: on the claim engine (asynchronous commit)."""
        return await self._write(work, changed=bool, engine=self._claim_engine)

    async def _autocommit(
        self,
        work: Work[T],
        *,
        changed: Callable[[T], bool] = lambda _result: True,
        engine: AsyncEngine | None = None,
    ) -> T:
        """Run one statement's `work` in autocommit: the statement is its own transaction.

        Local waiters are woken after it unless `changed(result)` says it wrote nothing.

        Rerun only when the server says the statement was rolled back (deadlock, serialization
        failure); any other failure may have come after the commit.
        """

        async def run() -> T:
            async with (engine or self.engine).connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await auto.run_sync(work)

        return await self._one_statement(run, changed)

    async def _one_statement(
        self, run: Callable[[], Awaitable[T]], changed: Callable[[T], bool]
    ) -> T:
        """Run one autocommit statement (on the engine or a direct pool), rerun while the
        server says it rolled it back; wake local waiters unless `changed(result)` is False."""
        for attempt in range(1, 6):
            try:
                result = await run()
            except sa_exc.DBAPIError as error:
                if attempt < 5 and _sqlstate(error) in _ROLLED_BACK:
                    await asyncio.sleep(0.005 * attempt)
                    continue
                raise self._translate(error) from error
            except DirectError as error:
                if attempt < 5 and error.sqlstate in _ROLLED_BACK:
                    await asyncio.sleep(0.005 * attempt)
                    continue
                raise self._translate_direct(error) from error
            except OSError as error:
                raise BackendUnavailable(f"PostgreSQL unreachable: {error}") from error
            if changed(result):
                self._signal.notify()
            return result
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _direct_fetch(
        self,
        pool: DirectPool,
        statement: DirectStatement,
        params: dict[str, Any],
        changed: Callable[[Sequence[Any]], bool] = lambda _rows: True,
    ) -> Sequence[Any]:
        """Run one of the hot statements on a direct pool (see `pg_direct`)."""
        return await self._one_statement(lambda: pool.fetch(statement, params), changed)

    async def _server_now(self, now: datetime | None) -> datetime:
        """`now`, or the server's clock, measuring its offset first when that is due."""
        if now is None and self.dialect.offset_stale():
            await self._read(self.dialect.measure)
        return self.dialect.current(now)

    # -- the hot paths in one round trip -----------------------------------------------------
    async def insert_jobs(
        self,
        new_jobs: Sequence[InsertJob],
        *,
        now: datetime | None = None,
        connection: Any = None,
        audit: Callable[[list[InsertResult]], AuditRecord] | None = None,
    ) -> list[InsertResult]:
        """See `Backend.insert_jobs`: one statement when no idempotency key or dependency is
        involved (in autocommit; with `audit`, it and the audit insert in one transaction)."""
        portable = connection is not None or any(
            job.idempotency_key is not None
            or job.depends_on
            or job.depends_on_batch
            or job.depends_on_tags
            for job in new_jobs
        )
        if portable or not new_jobs:
            return await super().insert_jobs(new_jobs, now=now, connection=connection, audit=audit)

        direct = self._direct
        if direct is not None:
            at = await self._server_now(now)
            params = pg_statements.insert_params(new_jobs, at)
            after = None if audit is None else _audit_after(audit)
            rows = await self._one_statement(
                lambda: direct.fetch(_DIRECT_INSERT, params, after=after), always
            )
            return [InsertResult(row["id"], created=True, at=at) for row in rows]

        # A caller's engine (`from_engine`): the same statement through SQLAlchemy.
        def work(conn: sa.Connection) -> list[InsertResult]:
            at = self.dialect.now(conn, now)
            ids = conn.execute(pg_statements.INSERT, pg_statements.insert_params(new_jobs, at))
            results = [InsertResult(job_id, created=True, at=at) for job_id in ids.scalars()]
            if audit is not None:
                insert_audit(conn, audit(results))
            return results

        if audit is not None:
            return await self._write(work)
        return await self._autocommit(work)

    async def get_job(self, job_id: int) -> Job | None:
        """See `Backend.get_job`: on the direct pool when the store has one (every REST and
        MCP add answers with the job it read back: through the engine, that read cost more
        than the add itself)."""
        direct = self._direct
        if direct is None:
            return await super().get_job(job_id)
        rows = await self._direct_fetch(direct, _DIRECT_GET, {"job_id": job_id}, never)
        return job_from_values(rows[0]) if rows else None

    async def claim(
        self,
        *,
        worker_id: str,
        queue: str | None,
        job_types: Sequence[str] | None,
        limit: int,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> list[Job]:
        """See `Backend.claim`: one statement; SKIP LOCKED makes an empty claim cheap.

        With flow limits in the store, the transactional claim (`limits.admit`) runs instead;
        the one statement takes nothing while any limit exists, so a limit set by another
        process holds at once, before this process's cached view of it refreshes.
        """
        if limit <= 0:
            return []
        if await self._limits_may_exist():
            return await self._claim_limited(worker_id, queue, job_types, limit, lease_seconds, now)

        def statement_at(at: datetime) -> tuple[sa.Select[Any], dict[str, Any]]:
            return pg_statements.claim(
                worker_id=worker_id,
                queue=queue,
                job_types=job_types,
                limit=limit,
                lease_seconds=lease_seconds,
                at=at,
            )

        def work(conn: sa.Connection) -> list[Job]:
            statement, params = statement_at(self.dialect.now(conn, now))
            return [job_from_row(row) for row in conn.execute(statement, params)]

        # An empty claim changed nothing: waking local waiters for it would wake the worker that
        # made it, whose token predates it, and that worker would claim again at once, for ever
        # (an idle worker ran ~750 empty claims and next_due reads a second).
        if self._direct_claims is not None and queue is None and not job_types:
            _, params = statement_at(await self._server_now(now))
            before = self._signal.generation
            rows = await self._direct_fetch(
                self._direct_claims, _DIRECT_CLAIM, params, _claimed_some
            )
            found = (
                [job_from_values(row, skip=_CLAIM_STATE) for row in rows]
                if _claimed_some(rows)
                else []
            )
            # The statement's report, as of this process's change count once its own wake-up
            # (if it claimed) fired: any other change seen meanwhile leaves the count higher.
            state = rows[0]
            limited = bool(state["limited"])
            self._remember_limits(limited)
            # Under flow limits, what is due is the limits' answer (`limits.next_due`).
            known = now is None and not limited
            self._due_any = (
                _Due(before + bool(found), state["next_due"], time.monotonic()) if known else None
            )
        else:
            found = await self._autocommit(work, changed=bool, engine=self._claim_engine)
            limited = None
        found.sort(key=lambda job: (-job.priority, job.run_at, job.id))
        if found or not (await self._limits_exist_now() if limited is None else limited):
            return found
        return await self._claim_limited(worker_id, queue, job_types, limit, lease_seconds, now)

    async def _claim_limited(
        self,
        worker_id: str,
        queue: str | None,
        job_types: Sequence[str] | None,
        limit: int,
        lease_seconds: float,
        now: datetime | None,
    ) -> list[Job]:
        return await super().claim(
            worker_id=worker_id,
            queue=queue,
            job_types=job_types,
            limit=limit,
            lease_seconds=lease_seconds,
            now=now,
        )

    async def _limits_may_exist(self) -> bool:
        """Whether the store had flow limits when last looked (at most a second ago)."""
        if time.monotonic() - self._limits_checked_at > _LIMITS_REFRESH:
            return await self._limits_exist_now()
        return self._limits_seen

    async def _limits_exist_now(self) -> bool:
        """Look whether the store has flow limits (and remember it)."""
        query = sa.select(sa.exists(sa.select(limits_table.c.scope)))
        self._remember_limits(bool(await self._read(lambda conn: conn.execute(query).scalar())))
        return self._limits_seen

    def _remember_limits(self, seen: bool) -> None:
        self._limits_seen = seen
        self._limits_checked_at = time.monotonic()

    def due_known(
        self, *, queue: str | None, job_types: Sequence[str] | None
    ) -> tuple[bool, datetime | None]:
        """See `KnowsWhatIsDue.due_known`: for unfiltered claims, from the report of the last
        direct claim, while this process has seen no change since (and its LISTEN connection
        is up, so it would have)."""
        known = self._due_any
        if (
            queue is not None
            or job_types
            or known is None
            or not self._listening
            or known.as_of != self._signal.generation
            or time.monotonic() - known.seen_at > _DUE_TRUST
        ):
            return False, None
        return True, known.run_at

    async def next_due(
        self,
        *,
        queue: str | None,
        job_types: Sequence[str] | None,
        now: datetime | None = None,
    ) -> datetime | None:
        """See `Backend.next_due`: without a round trip when `due_known` knows."""
        if now is None:
            known, run_at = self.due_known(queue=queue, job_types=job_types)
            if known:
                return run_at
        return await super().next_due(queue=queue, job_types=job_types, now=now)

    async def refresh_statistics(self) -> list[str]:
        """See `RefreshesStatistics`: at most every 10 s per process, `ANALYZE` each queue table
        never analyzed, or changed by more than 1,000 rows plus 10% since its last analysis
        (autovacuum's own threshold is 20%, looked at once a minute)."""
        if time.monotonic() - self._statistics_checked_at < _STATISTICS_CHECK:
            return []
        self._statistics_checked_at = time.monotonic()
        query = sa.text(
            "SELECT c.relname, c.reltuples, coalesce(s.n_mod_since_analyze, 0) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE n.nspname = :schema AND c.relname = ANY(:names)"
        ).bindparams(
            sa.bindparam("names", list(_STATISTICS_TABLES), type_=postgresql.ARRAY(sa.Text()))
        )
        schema = self.schema
        rows = await self._read(lambda conn: conn.execute(query, {"schema": schema}).all())
        stale = [
            name
            for name, tuples, changed in rows
            # Never analyzed (-1), or changed a lot: the counters reach pg_stat within a second.
            if tuples < 0 or changed > _STALE_ROWS + 0.1 * tuples
        ]
        for name in sorted(stale):
            # Autocommit; ANALYZE takes a lock that conflicts only with schema changes and
            # other ANALYZEs (a concurrent one of another worker waits, then is quick).
            statement = sa.text(f'ANALYZE "{schema}"."{name}"')
            await self._read(lambda conn, statement=statement: conn.execute(statement))
        return sorted(stale)

    async def update_limit(
        self,
        scope: LimitScope,
        key: str,
        changes: dict[str, Any],
        *,
        now: datetime | None = None,
    ) -> Limit | None:
        """See `Backend.update_limit`."""
        stored = await super().update_limit(scope, key, changes, now=now)
        self._limits_checked_at = -_LIMITS_REFRESH  # look again at the next claim
        return stored

    async def finish(
        self, *, worker_id: str, outcomes: Sequence[Outcome], now: datetime | None = None
    ) -> set[int]:
        """See `Backend.finish`: a batch of completions is one statement.

        Completions it leaves (a lost lease, or a job others depend on) go through the
        transactional path, which tells the two apart.
        """
        if not outcomes or any(o.kind is not OutcomeKind.COMPLETE for o in outcomes):
            return await super().finish(worker_id=worker_id, outcomes=outcomes, now=now)

        def work(conn: sa.Connection) -> set[int]:
            params = pg_statements.complete_params(worker_id, outcomes, self.dialect.now(conn, now))
            return set(conn.execute(pg_statements.COMPLETE, params).scalars())

        if self._direct is not None:
            params = pg_statements.complete_params(worker_id, outcomes, await self._server_now(now))
            rows = await self._direct_fetch(self._direct, _DIRECT_COMPLETE, params)
            done = {row[0] for row in rows}
        else:
            done = await self._autocommit(work)
        left = [o for o in outcomes if o.lease.job_id not in done]
        if not left:
            return set()
        return await super().finish(worker_id=worker_id, outcomes=left, now=now)

    async def _run_in(self, connection: Any, work: Work[T]) -> T:
        """Run `work` on the caller's connection, inside the caller's transaction.

        A SQLAlchemy `AsyncConnection` is used as it is; a raw asyncpg connection is wrapped
        in an engine whose pool only ever hands out that connection and never resets or
        closes it; SQLAlchemy's transaction on it becomes a savepoint inside the caller's.
        """
        if isinstance(connection, AsyncConnection):
            return await self._run_scoped(connection, work)
        wrapped = await self._wrap_asyncpg(connection)
        try:
            async with wrapped.begin():
                return await self._run_scoped(wrapped, work)
        finally:
            await wrapped.close()  # back to its private pool; the raw connection stays open

    async def _run_scoped(self, connection: AsyncConnection, work: Work[T]) -> T:
        # The caller's connection has its own search_path: name our schema explicitly.
        scoped = await connection.execution_options(schema_translate_map={None: self.schema})
        try:
            return await scoped.run_sync(work)
        except sa_exc.DBAPIError as error:
            raise self._translate(error) from error

    async def _wrap_asyncpg(self, raw: Any) -> AsyncConnection:
        import asyncpg

        if not isinstance(raw, asyncpg.Connection):
            raise InvalidArgument(
                "connection must be a SQLAlchemy AsyncConnection or an asyncpg Connection, "
                f"not {type(raw).__name__}"
            )
        engine = self._wrapped.get(raw)
        if engine is None:

            async def hand_out() -> Any:
                return raw

            engine = create_async_engine(
                "postgresql+asyncpg://",
                async_creator=hand_out,
                poolclass=StaticPool,
                pool_reset_on_return=None,
            )
            self._wrapped[raw] = engine
        return await engine.connect()

    def _translate(self, error: sa_exc.DBAPIError) -> Exception:
        return _translated(_sqlstate(error), str(error.orig))

    def _translate_direct(self, error: DirectError) -> Exception:
        if error.sqlstate is None or connection_gone(error.sqlstate):
            return BackendUnavailable(f"PostgreSQL unreachable: {error}")
        return _translated(error.sqlstate, str(error))

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self, *, migrate: bool = False) -> None:
        """See `Backend.open` (also after a `close`: the listener starts again on first use)."""
        self._closed = False
        if self.options.schema is None:
            self.schema = await self._read(
                lambda conn: conn.execute(sa.select(sa.func.current_schema())).scalar_one()
            )
        await super().open(migrate=migrate)
        await self._read(self.dialect.measure)

    async def migrate(self) -> list[str]:
        """See `Backend.migrate`: creates the schema; concurrent migrators take turns."""
        schema = self.schema

        def run(conn: sa.Connection) -> list[str]:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            conn.execute(
                sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"aqm:{schema}")))
            )
            return migrations.apply(conn, self.dialect.now(conn, None))

        return await self._write(run)

    async def close(self) -> None:
        """See `Backend.close`."""
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None  # a reopened store LISTENs again, on its new loop
        for pool in (self._direct, self._direct_claims):
            if pool is not None:
                await pool.close()
        if self._owns_engine:
            await self._claim_engine.dispose()
            await self.engine.dispose()

    # -- the event feed ----------------------------------------------------------------------
    async def job_events(self, job_id: int) -> list[JobEvent]:
        """See `Backend.job_events` (numbers committed events first)."""
        await self._write(self.dialect.number_commits)
        return await super().job_events(job_id)

    async def read_events(
        self,
        *,
        after: str | None,
        limit: int,
        job_id: int | None = None,
        job_types: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
    ) -> list[JobEvent]:
        """See `Backend.read_events` (numbers committed events first)."""
        await self._write(self.dialect.number_commits)
        return await super().read_events(
            after=after, limit=limit, job_id=job_id, job_types=job_types, queues=queues
        )

    async def latest_event_cursor(self) -> str | None:
        """See `Backend.latest_event_cursor` (numbers committed events first)."""
        await self._write(self.dialect.number_commits)
        return await super().latest_event_cursor()

    # -- wake-ups ----------------------------------------------------------------------------
    def change_token(self) -> int:
        """See `Backend.change_token`."""
        if self._listener is None and not self._closed:
            self._signal.bind(asyncio.get_running_loop())
            self._listener = asyncio.create_task(self._listen(), name="agentqueue-pg-listen")
        return self._signal.generation

    async def wait_for_change(self, timeout: float, since: int | None = None) -> bool:
        """See `Backend.wait_for_change`."""
        if since is None:
            since = self.change_token()
        return await self._signal.wait(timeout, since)

    async def _listen(self) -> None:
        """Keep one LISTEN connection; poll-wake waiters whenever it is down."""
        import asyncpg

        dsn = self.options.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        schema = self.schema
        pause = 0.1
        while not self._closed:
            conn: Any = None
            try:
                conn = await asyncpg.connect(dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())

                def on_notify(_conn: Any, pid: int, _channel: str, payload: str) -> None:
                    if payload == schema and pid not in self._direct_pids:
                        self._signal.notify()

                await conn.add_listener(CHANNEL, on_notify)
                pause = 0.1
                self._listening = True
                self._signal.notify()  # commits may have happened while we were not listening
                while not lost.is_set():
                    # A half-open connection never reports its loss: probe it now and then.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(10):
                            await lost.wait()
                    if not lost.is_set():
                        async with asyncio.timeout(5):
                            await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure of the listener falls back to polling
                logger.warning("PostgreSQL LISTEN connection lost (%s); polling until back", error)
            finally:
                self._listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and not self._closed:
                self._signal.notify()
                await asyncio.sleep(self.options.fallback_poll)
            pause = min(pause * 2, 5.0)


_CLAIM_STATE = pg_statements.CLAIM_STATE


def _claimed_some(rows: Sequence[Any]) -> bool:
    """Whether a `CLAIM_ANY_REPORTING` reply holds jobs (not only its report row)."""
    return bool(rows) and rows[0]["id"] is not None


@dataclass(frozen=True, slots=True)
class _Due:
    """What a claim left, as of a count of this process's change signal."""

    as_of: int
    run_at: datetime | None
    seen_at: float
    """`time.monotonic()` when the claim returned: trusted for `_DUE_TRUST` seconds."""


def _rerun(error: sa_exc.DBAPIError) -> bool:
    """Whether a transaction that failed before its commit should simply run again.

    A lost race (another writer's key, a deadlock, a serialization failure) reruns on fresh
    state; so does a pooled connection the server dropped (a restart), instead of paying a
    ping on every checkout.
    """
    return error.connection_invalidated or _sqlstate(error) in _RETRYABLE


def _translated(sqlstate: str | None, message: str) -> Exception:
    """The core's error for a statement the server refused with `sqlstate`."""
    if sqlstate == "53100":  # disk_full
        return StoreFull(f"PostgreSQL's disk is full; nothing was written: {message}")
    return BackendUnavailable(f"PostgreSQL error: {message}")


def _where(engine: AsyncEngine) -> str:
    """Where the server is, for messages (never the password)."""
    url = engine.url
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def _sqlstate(error: sa_exc.DBAPIError) -> str | None:
    orig = error.orig
    return getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
