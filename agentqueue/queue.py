"""`Queue`: the one facade every door calls. Behaviour lives here; stores only store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from agentqueue import api_keys, bulk, config, limits, throughput
from agentqueue.backends import backend_for, backend_from_url, describe
from agentqueue.backends.base import Backend, InsertJob, InsertResult, TokenCompletionKind
from agentqueue.backends.stored import new_job
from agentqueue.clock import SYSTEM_CLOCK, Clock, SystemClock
from agentqueue.context import new_token_id, plausible_token_id
from agentqueue.cron import CodeSchedule, CronManager, check_name, options_from
from agentqueue.enqueue import JobId, Resolver
from agentqueue.errors import (
    CronJobNotFound,
    InvalidArgument,
    JobNotFound,
    TokenNotFound,
    TokenNotPending,
)
from agentqueue.models import (
    MAX_JOB_ID,
    ApiKey,
    ApiScope,
    AuditRecord,
    BulkResult,
    CronJob,
    CronStatus,
    Job,
    JobEdit,
    JobEvent,
    JobFilter,
    JobOptions,
    JobTypeInfo,
    Limit,
    ListOrder,
    MaintenanceReport,
    NewJob,
    Origin,
    Page,
    QueueStats,
    TagMode,
    Throughput,
    Token,
    TokenStatus,
    WorkerInfo,
    check_tags,
    check_text,
)
from agentqueue.registry import Hook, Registry, build_spec, check_plain_json, payload_value
from agentqueue.schedule import CronExpression
from agentqueue.states import TERMINAL, JobStatus

CANCELLABLE = frozenset(
    {JobStatus.BLOCKED, JobStatus.PENDING, JobStatus.WAITING, JobStatus.PROCESSING}
)
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})

if TYPE_CHECKING:
    from agentqueue.explain import Explanation
    from agentqueue.supervisor import Supervisor
    from agentqueue.worker.worker import Worker

F = TypeVar("F", bound=Callable[..., Any])


def invalid_from(error: ValidationError, what: str) -> InvalidArgument:
    """Turn a pydantic error on the caller's arguments into one readable `InvalidArgument`."""
    problems = [
        {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
        for e in error.errors(include_url=False)
    ]
    text = "; ".join(f"{p['loc'] or what}: {p['msg']}" for p in problems)
    return InvalidArgument(f"invalid {what}: {text}", errors=problems)


def _from_results(
    audit: Callable[[list[JobId]], AuditRecord],
) -> Callable[[list[InsertResult]], AuditRecord]:
    """`audit` for the store, which knows its results, not the `JobId`s callers get."""
    return lambda results: audit([JobId(result.id, result.created) for result in results])


class Queue:
    """A durable job queue on one store.

    Args:
        url: the store: `sqlite:///path.db`, `memory://`, `postgresql://…`, `redis://…`
            (default: AGENTQUEUE_URL, else `sqlite:///./agentqueue.db`) — or your own
            SQLAlchemy `AsyncEngine` or redis-py asyncio client, which the queue uses and never
            closes.
        backend: an already built store (instead of `url`).
        clock: time source; pass a `FrozenClock` in tests.
        migrate: bring the schema up to date when opening (default True).

    Use `async with queue:` (or `await queue.open()` / `await queue.close()`); any call also
    opens the queue on first use.
    """

    def __init__(
        self,
        url: str | Any = None,
        *,
        backend: Backend | None = None,
        clock: Clock | None = None,
        migrate: bool = True,
    ) -> None:
        if backend is not None:
            self.url = url if isinstance(url, str) else "<custom backend>"
            self.backend: Backend = backend
        else:
            target = config.store_url(url) if url is None or isinstance(url, str) else url
            self.url = describe(target)
            self.backend = backend_for(target)
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.registry = Registry()
        self._cron = CronManager(self)
        self._migrate = migrate
        self._opened = False
        self._open_lock = asyncio.Lock()
        self.resolver = Resolver(self)
        """Validates and resolves what callers enqueue (see `agentqueue.enqueue`)."""

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> Queue:
        """Connect to the store (and migrate it unless `migrate=False`); idempotent."""
        async with self._open_lock:
            if not self._opened:
                await self.backend.open(migrate=self._migrate)
                self._opened = True
        return self

    def use_url(self, url: str) -> None:
        """Point a not-yet-opened queue at another store (e.g. the CLI's `--url` for an app's
        queue); its handlers stay registered.

        Raises:
            InvalidArgument: the queue is already open.
            ConfigError: the URL is malformed.
        """
        if self._opened:
            raise InvalidArgument("use_url() must be called before the queue is opened")
        self.backend = backend_from_url(url)
        self.url = describe(url)

    async def close(self) -> None:
        """Disconnect from the store; idempotent."""
        if self._opened:
            self._opened = False
            await self.backend.close()

    async def __aenter__(self) -> Queue:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _store(self) -> Backend:
        if not self._opened:
            await self.open()
        return self.backend

    def now(self) -> datetime | None:
        """Return the time to hand to the store: None (its own clock) unless time is injected."""
        return None if isinstance(self.clock, SystemClock) else self.clock.now()

    # -- handlers ----------------------------------------------------------------------------
    def handler(
        self,
        name: str,
        *,
        description: str | None = None,
        queue: str | None = None,
        examples: list[Any] | None = None,
        on_success: Hook | None = None,
        on_failure: Hook | None = None,
        on_timeout: Hook | None = None,
        **defaults: Any,
    ) -> Callable[[F], F]:
        """Register the decorated function as the handler of job type `name`.

        The handler is `async def fn(payload, ctx)` or a plain `def` (run in a thread); the
        payload's annotation (e.g. a pydantic model) validates jobs at enqueue time. `defaults`
        are job options (max_attempts, retry_delay, retry_backoff, retry_delay_max, timeout,
        priority) its jobs get unless `add_job` overrides them. `on_success(job, output)` and
        `on_failure(job, error, will_retry)` run after the outcome is stored.
        `on_timeout(job, ctx)` runs at an attempt's deadline: return seconds (or call
        `ctx.prolong`) to extend it, None to let the attempt time out.
        `force_kill_on_timeout=True` runs each job in a child process killed at the deadline
        (the handler must be a top-level function; no steps, waits or tokens there).
        """
        try:
            options = JobOptions(queue=queue, **defaults)
            NewJob(job_type=name)
        except ValidationError as error:
            raise invalid_from(error, f"handler options for {name!r}") from None

        def register(fn: F) -> F:
            self.registry.add(
                build_spec(
                    name,
                    fn,
                    description=description,
                    queue=queue,
                    defaults=options,
                    examples=examples,
                    on_success=on_success,
                    on_failure=on_failure,
                    on_timeout=on_timeout,
                )
            )
            return fn

        return register

    async def publish_job_types(self) -> None:
        """Publish this process's handlers (name, description, payload schema) into the store."""
        store = await self._store()
        await store.publish_job_types(self.registry.infos(), now=self.now())
        self.resolver.forget_stored_types()

    async def list_job_types(self) -> list[JobTypeInfo]:
        """Return every job type known to the store, plus this process's unpublished handlers."""
        store = await self._store()
        known = {info.name: info for info in await store.list_job_types()}
        for info in self.registry.infos():
            known.setdefault(info.name, info)
        return [known[name] for name in sorted(known)]

    # -- enqueue -----------------------------------------------------------------------------
    async def add_job(
        self,
        job_type: str,
        payload: Any = None,
        *,
        connection: Any = None,
        origin: Origin | None = None,
        audit: Callable[[list[JobId]], AuditRecord] | None = None,
        **options: Any,
    ) -> JobId:
        """Enqueue one job and return its id (a `JobId`: an int whose `created` is False when
        an idempotency key returned an existing job).

        Options: queue, priority (higher first), run_at (aware datetime) or delay (seconds),
        tags, max_attempts, retry_delay, retry_backoff, retry_delay_max, timeout (seconds),
        idempotency_key (a second add with the same job type and key returns the first job)
        and idempotency_window (seconds after which the key may create a new job), group
        (shares the group's limits), dead_letter_job_type (enqueued with a `DeadLetter`
        envelope after the last failed attempt), depends_on (job ids: run after all of them
        completed) and depends_on_tags (run after the unfinished jobs with these tags).

        `connection`: your own connection to the same database, inside your transaction; the
        job and its event then commit or roll back with your writes. SQL stores only
        (`queue.backend.capabilities.transactional_enqueue`): a SQLAlchemy `AsyncConnection` or
        `Connection`, or on PostgreSQL also a raw asyncpg connection.

        `origin`: who asked (the REST and MCP doors set it; `list_jobs(created_by=...)` finds
        an actor's jobs again). `audit`: builds the audit record of the call from the new ids;
        it is written with the jobs, in the same transaction on SQL stores (the doors' audit,
        `agentqueue.audit.AuditNote.adding`).

        Raises:
            PayloadInvalid: the payload does not match the job type's schema (nothing stored).
            InvalidArgument: an option is malformed, or `connection` on a store without
                transactional enqueue.
        """
        ids = await self.add_jobs(
            [{"job_type": job_type, "payload": {} if payload is None else payload, **options}],
            connection=connection,
            origin=origin,
            audit=audit,
        )
        return ids[0]

    async def add_jobs(
        self,
        jobs: Sequence[NewJob | dict[str, Any]],
        *,
        connection: Any = None,
        origin: Origin | None = None,
        audit: Callable[[list[JobId]], AuditRecord] | None = None,
    ) -> list[JobId]:
        """Enqueue many jobs atomically (all or none); return their ids in input order.

        A job may give itself a `ref` and later jobs of the same call may name that ref in
        `depends_on` (a job that does not exist yet has no id). `connection`, `origin`,
        `audit`: see `add_job`.
        """
        _resolved, results = await self._insert(jobs, connection, origin, audit)
        return [JobId(result.id, result.created) for result in results]

    async def add_jobs_returning(
        self,
        jobs: Sequence[NewJob | dict[str, Any]],
        *,
        connection: Any = None,
        origin: Origin | None = None,
        audit: Callable[[list[JobId]], AuditRecord] | None = None,
    ) -> list[tuple[JobId, Job]]:
        """`add_jobs`, and each job as stored (what `get_job` returns right after).

        A created job is known from what the store wrote, with no read; a job an idempotency
        key returned, or one with prerequisites (it may start blocked), is read back. The REST
        and MCP adds answer with these.

        Raises:
            JobNotFound: a job an idempotency key returned was purged before it was read.
        """
        resolved, results = await self._insert(jobs, connection, origin, audit)
        added: list[tuple[JobId, Job]] = []
        for job, result in zip(resolved, results, strict=True):
            job_id = JobId(result.id, result.created)
            stored = new_job(job, result) or await self.get_job(job_id)
            if stored is None:
                raise JobNotFound(job_id)
            added.append((job_id, stored))
        return added

    async def _insert(
        self,
        jobs: Sequence[NewJob | dict[str, Any]],
        connection: Any,
        origin: Origin | None,
        audit: Callable[[list[JobId]], AuditRecord] | None,
    ) -> tuple[list[InsertJob], list[InsertResult]]:
        data = None if origin is None else origin.model_dump(mode="json", exclude_none=True)
        resolved = await self.resolver.resolve_batch(jobs, origin=data)
        store = await self._store()
        if connection is not None and not store.capabilities.transactional_enqueue:
            raise InvalidArgument(
                "transactional enqueue (connection=...) needs a SQL store on a database your "
                f"connection can reach (SQLite file or PostgreSQL); this queue uses {self.url}"
            )
        record = None if audit is None else _from_results(audit)
        results = await store.insert_jobs(
            resolved, now=self.now(), connection=connection, audit=record
        )
        return resolved, results

    # -- read --------------------------------------------------------------------------------
    def _existing_id(self, job_id: int) -> bool:
        """Whether `job_id` can name a stored job (an id no store can hold names none)."""
        return isinstance(job_id, int) and 1 <= job_id <= MAX_JOB_ID

    async def _job_store(self, job_id: int) -> Backend:
        """The store, for a call about `job_id`; raises `JobNotFound` for an impossible id."""
        if not self._existing_id(job_id):
            raise JobNotFound(job_id)
        return await self._store()

    async def get_job(self, job_id: int) -> Job | None:
        """Return the job with this id, or None."""
        if not self._existing_id(job_id):
            return None
        return await (await self._store()).get_job(job_id)

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        job_type: str | Sequence[str] | None = None,
        queue: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        tag_mode: TagMode | str = TagMode.ANY,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        run_at_after: datetime | None = None,
        run_at_before: datetime | None = None,
        created_by: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        order: ListOrder | str = ListOrder.NEWEST,
    ) -> Page[Job]:
        """Return one page of jobs matching every given filter; follow `next_cursor` for more.

        Raises:
            InvalidArgument: a filter value is malformed (unknown status, bad cursor …).
        """
        if not 1 <= limit <= 1000:
            raise InvalidArgument(f"limit must be from 1 to 1000, not {limit}")
        try:
            filter = JobFilter(
                status=_as_list(status),
                job_type=_as_list(job_type),
                queue=_as_list(queue),
                tags=list(tags) if tags is not None else None,
                tag_mode=_choice(TagMode, tag_mode, "tag_mode"),
                created_after=created_after,
                created_before=created_before,
                run_at_after=run_at_after,
                run_at_before=run_at_before,
                created_by=created_by,
            )
        except ValidationError as error:
            raise invalid_from(error, "filter") from None
        order = _choice(ListOrder, order, "order")
        after_id = _decode_cursor(cursor)
        store = await self._store()
        items = await store.list_jobs(filter, limit=limit + 1, after_id=after_id, order=order)
        more = len(items) > limit
        items = items[:limit]
        return Page[Job](items=items, next_cursor=str(items[-1].id) if more else None)

    async def explain_job(self, job_id: int) -> Explanation:
        """Why a job is not running, or why it ended as it did: structured reasons (a future
        run_at, unmet dependencies, a paused type or full limit, a token it waits on, no live
        worker serving its type, an expired lease, exhausted attempts with the last error).

        Raises:
            JobNotFound: no such job.
        """
        from agentqueue.explain import explain

        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return await explain(self, job)

    async def get_job_events(self, job_id: int) -> list[JobEvent]:
        """Return a job's history, oldest first.

        Raises:
            JobNotFound: no such job.
        """
        store = await self._job_store(job_id)
        events = await store.job_events(job_id)
        if not events and await store.get_job(job_id) is None:
            raise JobNotFound(job_id)
        return events

    async def stats(self) -> QueueStats:
        """Count jobs per job type and status."""
        return await (await self._store()).stats()

    async def throughput(
        self, *, buckets: int = 60, bucket_seconds: int = 60, until: datetime | None = None
    ) -> Throughput:
        """Jobs completed, failed and cancelled per bucket of `bucket_seconds`, the last
        `buckets` buckets up to `until` (default now), oldest first, with no gaps.

        Counted by each job's `completed_at` from the store's finished-jobs index, so a purged
        job, or a failed one retried since, no longer counts.

        Raises:
            InvalidArgument: buckets not in 1..1440, bucket_seconds not in 1..86400.
        """
        throughput.check_window(buckets, bucket_seconds)
        end = until if until is not None else self.clock.now()
        last = throughput.bucket_of(end, bucket_seconds)
        first = last - buckets + 1
        rows = await (await self._store()).finished_counts(
            since=throughput.bucket_start(first, bucket_seconds), bucket_seconds=bucket_seconds
        )
        return throughput.fold(
            rows, first=first, last=last, bucket_seconds=bucket_seconds, until=end
        )

    # -- change ------------------------------------------------------------------------------
    async def cancel_job(self, job_id: int) -> Job:
        """Cancel a job: pending/waiting at once; a processing one is asked to stop.

        Raises:
            JobNotFound, InvalidTransition (already completed, failed or cancelled).
        """
        return await (await self._job_store(job_id)).cancel_job(job_id, now=self.now())

    async def retry_job(self, job_id: int) -> Job:
        """Run a failed or cancelled job again from attempt 1.

        Raises:
            JobNotFound, InvalidTransition (the job is not failed or cancelled).
        """
        return await (await self._job_store(job_id)).retry_job(job_id, now=self.now())

    async def edit_job(self, job_id: int, **changes: Any) -> Job:
        """Change a pending job: payload, priority, run_at, tags, queue, retry settings, timeout.

        Raises:
            JobNotFound, InvalidTransition (not pending), InvalidArgument, PayloadInvalid.
        """
        if not changes:
            raise InvalidArgument("edit_job needs at least one field to change")
        if "payload" in changes:
            changes["payload"] = payload_value(changes["payload"])
        try:
            edit = JobEdit.model_validate(changes)
        except ValidationError as error:
            raise invalid_from(error, "edit") from None
        store = await self._job_store(job_id)
        if "payload" in changes:
            job = await store.get_job(job_id)
            if job is None:
                raise JobNotFound(job_id)
            await self.resolver.check_payload(job.job_type, edit.payload)
        return await store.edit_job(job_id, edit, now=self.now())

    # -- events ------------------------------------------------------------------------------
    async def events(
        self,
        *,
        after: str | None = None,
        from_start: bool = False,
        job_id: int | None = None,
        job_types: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
        batch: int = 500,
        pace: float = 0.0,
    ) -> AsyncIterator[JobEvent]:
        """Yield job events as they are committed, from any process, forever.

        Starts after the event whose `cursor` is `after` (resume without gaps), else from the
        first event with `from_start`, else with the events committed from now on. `pace`:
        seconds to wait after a wake-up before reading, for a follower that needs no instant
        updates (one read then takes the events of many commits).

        Raises:
            InvalidArgument: `after` is not an event cursor of this store.
        """
        store = await self._store()
        cursor = after
        if cursor is None and not from_start:
            cursor = await store.latest_event_cursor()
        while True:
            token = store.change_token()
            found = await store.read_events(
                after=cursor, limit=batch, job_id=job_id, job_types=job_types, queues=queues
            )
            for event in found:
                cursor = event.cursor
                yield event
            if len(found) < batch and await store.wait_for_change(1.0, since=token) and pace:
                await asyncio.sleep(pace)

    async def subscribe(self, job_id: int) -> AsyncIterator[JobEvent]:
        """Yield one job's events, its whole history first, until it is terminal.

        Raises:
            JobNotFound: no such job.
        """
        store = await self._job_store(job_id)
        if await store.get_job(job_id) is None:
            raise JobNotFound(job_id)
        async for event in self.events(from_start=True, job_id=job_id):
            yield event
            # A terminal event in the history is the end only if nothing followed it (an
            # operator's retry_job starts the job again).
            if event.status in TERMINAL and not await store.read_events(
                after=event.cursor, limit=1, job_id=job_id
            ):
                return

    # -- bulk --------------------------------------------------------------------------------
    async def cancel_jobs(self, *, dry_run: bool = False, **filters: Any) -> BulkResult:
        """Cancel every pending, waiting or processing job matching `filters` (the filters of
        `list_jobs`); with `dry_run`, only count them and return a sample."""
        return await bulk.apply(
            self, CANCELLABLE, filters, lambda job: self.cancel_job(job.id), dry_run=dry_run
        )

    async def retry_jobs(self, *, dry_run: bool = False, **filters: Any) -> BulkResult:
        """Retry every failed or cancelled job matching `filters` (a redrive: each keeps its
        configuration, attempts start again); with `dry_run`, only preview."""
        return await bulk.apply(
            self, RETRYABLE, filters, lambda job: self.retry_job(job.id), dry_run=dry_run
        )

    async def purge_jobs(self, *, dry_run: bool = False, **filters: Any) -> BulkResult:
        """Delete every finished (completed, failed, cancelled) job the filters match, with its
        events, steps and tokens (`list_jobs` filters; `status` narrows to some of those).
        With `dry_run=True` nothing changes: the result counts and samples the matches.
        Active jobs are never deleted: cancel them first."""
        return await bulk.purge(self, filters, dry_run=dry_run)

    async def edit_pending_jobs(
        self, changes: dict[str, Any], *, dry_run: bool = False, **filters: Any
    ) -> BulkResult:
        """Apply `changes` (the fields of `edit_job`) to every pending job matching `filters`.

        Raises:
            InvalidArgument: `changes` is empty or invalid (checked before any job changes).
        """
        if not changes:
            raise InvalidArgument("edit_pending_jobs needs at least one field to change")
        try:
            JobEdit.model_validate(
                {**changes, "payload": payload_value(changes["payload"])}
                if "payload" in changes
                else changes
            )
        except ValidationError as error:
            raise invalid_from(error, "changes") from None
        return await bulk.apply(
            self,
            frozenset({JobStatus.PENDING}),
            filters,
            lambda job: self.edit_job(job.id, **dict(changes)),
            dry_run=dry_run,
        )

    # -- durable execution -------------------------------------------------------------------
    async def create_token(
        self, *, timeout: float | timedelta | None = None, tags: Sequence[str] | None = None
    ) -> Token:
        """Create a token outside any handler (a handler waits on it with `wait_for_token`).

        `timeout` (seconds or a timedelta) makes it expire; None lets it wait forever.
        """
        span = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if span is not None and span <= 0:
            raise InvalidArgument(f"a token timeout must be positive, not {timeout!r}")
        try:
            checked_tags = check_tags(list(tags or []))
        except ValueError as error:
            raise InvalidArgument(str(error)) from None
        store = await self._store()
        return await store.create_token(
            token_id=new_token_id(),
            job_id=None,
            step=None,
            expires_at=self.clock.now() + timedelta(seconds=span) if span is not None else None,
            tags=checked_tags,
            now=self.now(),
        )

    async def complete_token(self, token_id: str, data: Any = None) -> Token:
        """Complete a pending token with `data`; the job waiting on it resumes (same commit).

        Raises:
            TokenNotFound: no such token.
            TokenNotPending: it was already completed, or it expired (a token completed at
                or after its expiry instant is expired, never both).
            InvalidArgument: `data` is not plain JSON data.
        """
        value = payload_value(data)
        try:
            check_plain_json(value)
        except (TypeError, ValueError) as error:
            raise InvalidArgument(f"token data must be plain JSON data: {error}") from None
        if not plausible_token_id(token_id):
            raise TokenNotFound(str(token_id))
        store = await self._store()
        result = await store.complete_token(token_id, value, now=self.now())
        if result.kind is TokenCompletionKind.NOT_FOUND:
            raise TokenNotFound(token_id)
        assert result.token is not None
        if result.kind is TokenCompletionKind.NOT_PENDING:
            raise TokenNotPending(token_id, result.token.status.value)
        return result.token

    async def get_token(self, token_id: str) -> Token | None:
        """Return the token with this id, or None."""
        if not plausible_token_id(token_id):
            return None
        return await (await self._store()).get_token(token_id)

    async def list_tokens(
        self,
        *,
        status: TokenStatus | str | Sequence[TokenStatus | str] | None = None,
        tags: Sequence[str] | None = None,
        job_id: int | None = None,
        limit: int = 100,
    ) -> list[Token]:
        """Return tokens, newest first, filtered by status, tags (any of them) and job."""
        if not 1 <= limit <= 1000:
            raise InvalidArgument(f"limit must be 1-1000, not {limit}")
        if job_id is not None and not self._existing_id(job_id):
            return []  # no store holds such a job, so no token names it
        statuses = _as_list(status)
        wanted = _as_list(tags)
        try:
            for tag in wanted or ():
                check_text(tag)
        except ValueError as error:
            raise InvalidArgument(f"invalid tag filter: {error}") from None
        store = await self._store()
        return await store.list_tokens(
            status=[_choice(TokenStatus, item, "status") for item in statuses]
            if statuses
            else None,
            tags=wanted,
            job_id=job_id,
            limit=limit,
        )

    async def get_steps(self, job_id: int) -> dict[str, Any]:
        """Return a job's memoized step results by name (waits and tokens use `aq:` names)."""
        return await (await self._job_store(job_id)).load_steps(job_id)

    async def maintain(self, **settings: Any) -> MaintenanceReport:
        """Run one supervisor pass now (see `Supervisor` for settings); return what it did."""
        return await self.supervisor(**settings).run_once()

    def supervisor(self, **settings: Any) -> Supervisor:
        """Return a `Supervisor` for this queue's store (see `Supervisor` for settings)."""
        from agentqueue.supervisor import Supervisor

        return Supervisor(self, **settings)

    # -- flow limits -------------------------------------------------------------------------
    async def set_limit(
        self, *, job_type: str | None = None, group: str | None = None, **changes: Any
    ) -> Limit | None:
        """Limit one job type or one group across every worker of the store.

        `max_concurrent` (jobs processing at once), `rate_limit` (starts in any `rate_period`
        seconds, default 1). Only the fields given change; None removes that limit. `group="*"`
        applies to each group that has no limit of its own (each group separately). Returns the
        limit now stored (None when nothing is limited any more). A job type's pause is kept.
        """
        scope, key = limits.target(job_type, group)
        checked = limits.checked_changes(scope, key, changes)
        return await (await self._store()).update_limit(scope, key, checked, now=self.now())

    async def get_limit(
        self, *, job_type: str | None = None, group: str | None = None
    ) -> Limit | None:
        """Return the limit of one job type or group (None: it has none of its own)."""
        scope, key = limits.target(job_type, group)
        found = [lim for lim in await self.list_limits() if (lim.scope, lim.key) == (scope, key)]
        return found[0] if found else None

    async def list_limits(self) -> list[Limit]:
        """Return every limit (paused job types included), by scope then key."""
        return await (await self._store()).list_limits()

    async def remove_limit(self, *, job_type: str | None = None, group: str | None = None) -> bool:
        """Remove one job type's or group's limit (a pause too); False when it had none."""
        scope, key = limits.target(job_type, group)
        return await (await self._store()).remove_limit(scope, key)

    async def pause_job_type(self, job_type: str) -> Limit:
        """Start no job of `job_type` until `resume_job_type` (running ones finish). Jobs can
        still be added; they wait pending."""
        scope, key = limits.target(job_type, None)
        stored = await (await self._store()).update_limit(
            scope, key, {"paused": True}, now=self.now()
        )
        assert stored is not None  # a paused limit is never empty
        return stored

    async def resume_job_type(self, job_type: str) -> Limit | None:
        """Let jobs of a paused job type start again (its other limits stay)."""
        scope, key = limits.target(job_type, None)
        return await (await self._store()).update_limit(
            scope, key, {"paused": False}, now=self.now()
        )

    # -- workers, API keys, audit -------------------------------------------------------------
    async def list_workers(self, *, alive: bool = True) -> list[WorkerInfo]:
        """Return the worker processes of the store: those seen within the last
        `config.WORKER_ALIVE_SECONDS` (all known ones with `alive=False`)."""
        store = await self._store()
        if not alive:
            return await store.list_workers()
        now = self.clock.now()
        since = now - timedelta(seconds=config.WORKER_ALIVE_SECONDS)
        return await store.list_workers(seen_after=since)

    async def create_api_key(self, name: str, scope: ApiScope | str) -> tuple[ApiKey, str]:
        """Make an API key for the REST and MCP doors; return it and its secret (shown once:
        the store keeps only a hash)."""
        return await api_keys.create(await self._store(), name, scope, self.clock.now())

    async def list_api_keys(self) -> list[ApiKey]:
        """Return every API key (revoked ones too); never a secret."""
        return await (await self._store()).list_api_keys()

    async def revoke_api_key(self, name: str) -> ApiKey:
        """Revoke the active API key of that name.

        Raises:
            InvalidArgument: no active key has that name.
        """
        revoked = await (await self._store()).revoke_api_key(name, now=self.now())
        if revoked is None:
            raise InvalidArgument(f"no active API key is named {name!r} (see list_api_keys)")
        return revoked

    async def list_audit(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> list[AuditRecord]:
        """Return audit records of mutating calls through REST and MCP, newest first."""
        if not 1 <= limit <= 1000:
            raise InvalidArgument(f"limit must be 1-1000, not {limit}")
        if before_id is not None and not 1 <= before_id <= MAX_JOB_ID:
            raise InvalidArgument(f"before_id must be an audit record's id, not {before_id}")
        return await (await self._store()).list_audit(limit=limit, before_id=before_id)

    # -- cron --------------------------------------------------------------------------------
    async def add_cron_job(
        self,
        schedule_name: str,
        cron_expression: str,
        job_type: str,
        payload: Any = None,
        *,
        timezone: str = "UTC",
        allow_overlap: bool = False,
        dead_letter_job_type: str | None = None,
        **options: Any,
    ) -> CronJob:
        """Store a cron schedule that enqueues `job_type` at each tick (idempotent: the same
        name replaces the schedule's definition and keeps its history).

        `cron_expression`: 5 fields, 6 with a leading seconds field, or @hourly/@daily/@weekly/
        @monthly/@yearly; ticks are computed in the IANA `timezone` (DST handled as cron does).
        `options`: job options of each job (queue, priority, max_attempts, retry_delay,
        retry_backoff, retry_delay_max, tags, timeout). `allow_overlap=False` skips a tick
        while the previous tick's job is still active.

        Raises:
            InvalidArgument: a bad expression, time zone, name, payload or option (nothing is
                stored).
        """
        return await self._cron.put(
            schedule_name,
            cron_expression,
            job_type,
            payload,
            timezone=timezone,
            allow_overlap=allow_overlap,
            dead_letter_job_type=dead_letter_job_type,
            options=options_from(options),
        )

    async def get_cron_job(self, schedule_name: str) -> CronJob | None:
        """Return the schedule, or None."""
        await self.open()
        return await self.backend.get_cron_job(schedule_name)

    async def list_cron_jobs(self, status: CronStatus | str | None = None) -> list[CronJob]:
        """Return the schedules by name (only active or paused ones with `status`)."""
        await self.open()
        wanted = _choice(CronStatus, status, "status") if status is not None else None
        return await self.backend.list_cron_jobs(status=wanted)

    async def edit_cron_job(self, schedule_name: str, **changes: Any) -> CronJob:
        """Change a schedule: cron_expression, timezone, job_type, payload, allow_overlap,
        dead_letter_job_type, or job options (which replace the given options only).

        Raises:
            CronJobNotFound: no such schedule.
            InvalidArgument: a bad value (nothing is changed).
        """
        cron = await self._cron.require(schedule_name)
        fields = {
            "cron_expression": cron.expression,
            "timezone": cron.timezone,
            "job_type": cron.job_type,
            "payload": cron.payload,
            "allow_overlap": cron.allow_overlap,
            "dead_letter_job_type": cron.dead_letter_job_type,
        }
        option_changes = {k: v for k, v in changes.items() if k not in fields}
        fields.update({k: v for k, v in changes.items() if k in fields})
        options = cron.options.model_dump(exclude_unset=True)
        options.update(option_changes)
        return await self._cron.put(
            schedule_name,
            fields["cron_expression"],
            fields["job_type"],
            fields["payload"],
            timezone=fields["timezone"],
            allow_overlap=fields["allow_overlap"],
            dead_letter_job_type=fields["dead_letter_job_type"],
            options=options_from(options),
            status=cron.status,
        )

    async def pause_cron_job(self, schedule_name: str) -> CronJob:
        """Stop a schedule from firing until `resume_cron_job` (raises CronJobNotFound)."""
        return await self._cron.set_status(schedule_name, CronStatus.PAUSED)

    async def resume_cron_job(self, schedule_name: str) -> CronJob:
        """Fire again from the next tick after now (ticks missed while paused are skipped)."""
        return await self._cron.set_status(schedule_name, CronStatus.ACTIVE)

    async def remove_cron_job(self, schedule_name: str) -> None:
        """Delete a schedule; jobs it enqueued stay (raises CronJobNotFound)."""
        await self.open()
        if not await self.backend.remove_cron_job(schedule_name):
            raise CronJobNotFound(schedule_name)

    def cron(
        self,
        cron_expression: str,
        *,
        name: str | None = None,
        payload: Any = None,
        timezone: str = "UTC",
        allow_overlap: bool = False,
        **options: Any,
    ) -> Callable[[F], F]:
        """Declare a schedule on a handler (put it above `@queue.handler(...)`); every worker
        upserts declared schedules when it starts. `name` defaults to the job type."""
        CronExpression(cron_expression, timezone)  # refuse a bad one at import time

        def declare(fn: F) -> F:
            job_type = self.registry.name_of(fn)
            schedule = check_name(name or job_type)
            self._cron.declared[schedule] = CodeSchedule(
                schedule, cron_expression, job_type, payload, timezone, allow_overlap, options
            )
            return fn

        return declare

    async def publish_cron_jobs(self) -> None:
        """Store the schedules declared with `@queue.cron` (workers do this at start)."""
        await self.open()
        await self._cron.upsert_declared()

    # -- workers -----------------------------------------------------------------------------
    def worker(self, **settings: Any) -> Worker:
        """Return a `Worker` that runs this queue's handlers (see `Worker` for settings)."""
        from agentqueue.worker.worker import Worker

        return Worker(self, **settings)


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)


E = TypeVar("E", TagMode, ListOrder, TokenStatus, CronStatus)


def _choice(kind: type[E], value: Any, name: str) -> E:
    """Return `value` as a member of `kind`, or an `InvalidArgument` naming the choices."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise InvalidArgument(f"{name} must be one of {choices}, not {value!r}") from None


def _decode_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit() or int(cursor) > MAX_JOB_ID:
        raise InvalidArgument(f"bad cursor {cursor!r}: pass the next_cursor of a previous page")
    return int(cursor)
