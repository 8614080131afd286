"""The `Backend` protocol: the domain operations every store implements atomically.

Behaviour (validation, retry policy, defaults, the registry's meaning) lives in the core; a store
keeps data and applies each operation as one atomic change, writing the job events of that change
in the same transaction (or the same Lua script). Methods are domain verbs, not queries, so a
store without SQL can implement each one in a single script.

Time: every method that depends on time takes `now`. `None` means "use the store's own clock"
(the database clock where there is one, so leases agree across machines); the core passes an
explicit time only when its clock is not the system clock (tests, frozen time).

Fencing: every worker write names the worker and the attempt it claimed. A store applies it only
while the job is still `processing` under that worker and attempt; otherwise the write is dropped
and reported as lost, never applied to someone else's attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from agentqueue.models import (
    ApiKey,
    AuditRecord,
    CronJob,
    CronStatus,
    ErrorRecord,
    Job,
    JobEdit,
    JobEvent,
    JobFilter,
    JobTypeInfo,
    Limit,
    LimitScope,
    ListOrder,
    QueueStats,
    Token,
    TokenStatus,
    WorkerInfo,
)
from agentqueue.states import JobStatus


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store can do beyond the common contract; tests branch on these, never on names."""

    transactional_enqueue: bool = False
    """`add_job(connection=...)` joins the caller's own transaction."""
    cross_process_wakeup: bool = True
    """An enqueue in one process wakes a worker in another without a slow poll."""
    durable: bool = True
    """Jobs survive the process (False for the in-memory store)."""


@dataclass(frozen=True, slots=True)
class InsertJob:
    """A job with every default resolved, ready to store.

    `run_at` None means "now" by the store's clock; `delay` seconds are added to it.
    """

    job_type: str
    queue: str
    payload: Any
    priority: int
    run_at: datetime | None
    delay: float
    tags: list[str]
    max_attempts: int
    retry_delay: float
    retry_backoff: bool
    retry_delay_max: float | None
    timeout: float | None
    idempotency_key: str | None
    force_kill_on_timeout: bool = False
    idempotency_window: float | None = None
    """Seconds during which `idempotency_key` returns this job (None: while it is kept)."""
    group: str | None = None
    dead_letter: dict[str, Any] | None = None
    """The dead-letter job to enqueue after the last failed attempt: `job_type`, `queue` and its
    resolved options (the core resolves them at enqueue; the store only copies them)."""
    depends_on: tuple[int, ...] = ()
    """Existing jobs this one runs after."""
    depends_on_batch: tuple[int, ...] = ()
    """Earlier jobs of the same `insert_jobs` call this one runs after (their indexes)."""
    depends_on_tags: tuple[str, ...] = ()
    """Tags whose unfinished jobs (at insert time) this one runs after."""
    origin: dict[str, Any] | None = None
    """Who asked for it (`models.Origin` as JSON data); its `actor` is `created_by`."""

    @classmethod
    def for_dead_letter(cls, spec: dict[str, Any], payload: Any) -> InsertJob:
        """The dead-letter job a store enqueues from a failed job's `dead_letter` spec."""
        return cls(
            job_type=spec["job_type"],
            queue=spec["queue"],
            payload=payload,
            priority=spec["priority"],
            run_at=None,
            delay=0.0,
            tags=list(spec.get("tags", [])),
            max_attempts=spec["max_attempts"],
            retry_delay=spec["retry_delay"],
            retry_backoff=spec["retry_backoff"],
            retry_delay_max=spec.get("retry_delay_max"),
            timeout=spec.get("timeout"),
            idempotency_key=None,
        )


@dataclass(frozen=True, slots=True)
class InsertResult:
    """The id a job got, and whether this call created it (False: idempotency-key duplicate)."""

    id: int
    created: bool
    at: datetime | None = None
    """When a created job was stored, by the store's clock (its `created_at`), when the store
    says; with it the core knows the stored job without reading it (`stored.new_job`)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """The fence of a worker write: the job and the attempt the worker claimed."""

    job_id: int
    attempt: int


class OutcomeKind(StrEnum):
    """What an attempt ended with."""

    COMPLETE = "complete"
    RETRY = "retry"
    FAIL = "fail"
    RELEASE = "release"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one attempt, as the worker reports it.

    - COMPLETE: processing -> completed, `output` stored, progress set to 100.
    - RETRY: processing -> pending at now + `retry_in`, `error` appended to the history.
    - FAIL: processing -> failed, `error` appended.
    - RELEASE: processing -> pending at now, the attempt given back (shutdown).
    - CANCEL: processing -> cancelled (the handler stopped on a cancel request).
    """

    kind: OutcomeKind
    lease: Lease
    output: Any = None
    error: ErrorRecord | None = None
    retry_in: float = 0.0


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    """What a heartbeat learned: leases no longer held, and jobs whose cancel was requested."""

    lost: set[int] = field(default_factory=set[int])
    cancel_requested: set[int] = field(default_factory=set[int])


@dataclass(frozen=True, slots=True)
class SuspendResult:
    """What `Backend.suspend` did.

    - `suspended`: the job is now `waiting` (the handler must stop at once).
    - not suspended, `token` set: the token was no longer pending (completed, or expired now or
      before); the job stays `processing` and the handler goes on with the token's outcome.
    - `lost`: the lease is lost; nothing changed.
    """

    suspended: bool
    lost: bool = False
    token: Token | None = None


class TokenCompletionKind(StrEnum):
    """How a `complete_token` call ended."""

    COMPLETED = "completed"
    NOT_FOUND = "not_found"
    NOT_PENDING = "not_pending"
    """Already completed or expired (a token past its expiry is expired by this call)."""


@dataclass(frozen=True, slots=True)
class TokenCompletion:
    """The result of `Backend.complete_token`: the token as it is now, and the job resumed."""

    kind: TokenCompletionKind
    token: Token | None = None
    resumed_job_id: int | None = None


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """Rows deleted by `Backend.purge`."""

    jobs: int = 0
    events: int = 0


@dataclass(frozen=True, slots=True)
class CronFire:
    """What `Backend.fire_cron` did for one tick."""

    won: bool
    """False: another scheduler already moved this schedule past the tick (nothing changed)."""
    job_id: int | None = None
    """The job enqueued for the tick (None when not won, or skipped for overlap)."""
    skipped_overlap: bool = False
    """The tick was consumed without a job: the previous tick's job is still active."""


@runtime_checkable
class Backend(Protocol):
    """A store of jobs. See the module docstring for time and fencing rules."""

    capabilities: Capabilities

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self, *, migrate: bool = False) -> None:
        """Connect. With `migrate`, bring the schema up to date first.

        Raises:
            SchemaMismatch: the schema is behind (and `migrate` is False) or ahead of this code.
            BackendUnavailable: the store cannot be reached.
        """
        ...

    async def close(self) -> None:
        """Release connections and background threads; idempotent."""
        ...

    async def migrate(self) -> list[str]:
        """Apply pending migrations in order; return the names applied (empty if up to date)."""
        ...

    # -- produce -----------------------------------------------------------------------------
    async def insert_jobs(
        self,
        new_jobs: Sequence[InsertJob],
        *,
        now: datetime | None = None,
        connection: Any = None,
        audit: Callable[[list[InsertResult]], AuditRecord] | None = None,
    ) -> list[InsertResult]:
        """Store jobs atomically (all or none), one `added` event each; results in input order.

        With `connection` (stores whose capabilities say `transactional_enqueue`), the rows are
        written on the caller's connection inside the caller's transaction.

        `audit`: builds an audit record from the results; SQL stores write it in the same
        transaction as the jobs, Redis right after them.

        A job whose (job_type, idempotency_key) already exists is not stored again: its result
        carries the existing id with `created=False`. Duplicates inside one batch resolve to the
        first of them.
        """
        ...

    # -- consume -----------------------------------------------------------------------------
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
        """Take up to `limit` due pending jobs in priority order (priority desc, run_at, id).

        Each claimed job becomes `processing` with attempts + 1, `locked_by` = worker_id and a
        lease of `lease_seconds`; a job is handed to exactly one claimer.
        """
        ...

    async def heartbeat(
        self,
        *,
        worker_id: str,
        leases: Sequence[Lease],
        lease_seconds: float,
        now: datetime | None = None,
    ) -> HeartbeatResult:
        """Extend the leases still held; report lost ones and requested cancellations."""
        ...

    async def finish(
        self, *, worker_id: str, outcomes: Sequence[Outcome], now: datetime | None = None
    ) -> set[int]:
        """Apply outcomes in one transaction; return the job ids whose lease was lost.

        A lost outcome changes nothing. A job whose cancel was requested never goes back to
        pending: a RETRY or RELEASE outcome for it ends it `cancelled` (its error still kept).
        """
        ...

    async def set_progress(
        self,
        *,
        worker_id: str,
        lease: Lease,
        progress: int,
        message: str | None,
        now: datetime | None = None,
    ) -> bool:
        """Record progress (0-100) and a `progress` event; False if the lease is lost."""
        ...

    async def set_output(
        self,
        *,
        worker_id: str,
        lease: Lease,
        output: Any,
        now: datetime | None = None,
    ) -> bool:
        """Store the running job's output now (an `output` event); False if the lease is lost.

        The COMPLETE outcome later overwrites it with the final output.
        """
        ...

    # -- durable execution -------------------------------------------------------------------
    async def load_steps(self, job_id: int) -> dict[str, Any]:
        """Return the job's memoized step results by step name (empty if none)."""
        ...

    async def save_step(
        self,
        *,
        worker_id: str,
        lease: Lease,
        name: str,
        value: Any,
        now: datetime | None = None,
    ) -> bool:
        """Memoize a step's JSON result under `name` with a `step` event {"name": name}.

        Fenced like every worker write: False (nothing written) if the lease is lost. A name
        already stored keeps its first value (True is returned: the step is memoized).
        """
        ...

    async def suspend(
        self,
        *,
        worker_id: str,
        lease: Lease,
        until: datetime,
        token_id: str | None = None,
        now: datetime | None = None,
    ) -> SuspendResult:
        """processing -> waiting until `until` (`FOREVER`: only a token wakes it), atomically.

        The attempt is given back (attempts - 1: a wait is not a failure), the lease and
        `locked_by` are cleared, `waiting_for` = `token_id`, `run_at` = `until`, and a `wait`
        event {"until": iso, "token": token_id} is written.

        With `token_id`, the token is checked in the same transaction: if it is not pending, or
        it is pending but its `expires_at` <= now (then it is marked expired here, an `expired`
        token), the job is not suspended and the token is returned. An unknown token id raises
        `TokenNotFound`. A job whose cancel was requested ends `cancelled` instead of waiting
        (reported as suspended: the handler must stop either way).
        """
        ...

    async def resume_due(self, *, now: datetime | None = None, limit: int = 1000) -> list[int]:
        """waiting -> pending for jobs whose `run_at` <= now (a `resume` event); return ids."""
        ...

    async def create_token(
        self,
        *,
        token_id: str,
        job_id: int | None,
        step: str | None,
        expires_at: datetime | None,
        tags: Sequence[str],
        now: datetime | None = None,
    ) -> Token:
        """Store a pending token; return it.

        With a `job_id` and `step` already used by a token, that token is returned unchanged
        instead (a handler's replay must not mint a second token). Race-free: a unique
        constraint or an atomic script, never check-then-insert. A `token_id` already taken by
        another token raises `InvalidArgument`.
        """
        ...

    async def complete_token(
        self, token_id: str, data: Any, *, now: datetime | None = None
    ) -> TokenCompletion:
        """pending -> completed with `data`, and resume the job waiting on it, atomically.

        Every job waiting on it (status `waiting`, `waiting_for` = token_id) goes pending at
        now with a `resume` event {"token": token_id}; `resumed_job_id` is the smallest id.
        A token past its `expires_at` (<= now) is expired instead (and its waiting jobs
        resumed) and the result is NOT_PENDING. Exactly one of any number of concurrent calls
        completes a token.
        """
        ...

    async def get_token(self, token_id: str) -> Token | None:
        """Return the token, or None."""
        ...

    async def list_tokens(
        self,
        *,
        status: Sequence[TokenStatus] | None = None,
        tags: Sequence[str] | None = None,
        job_id: int | None = None,
        limit: int = 100,
    ) -> list[Token]:
        """Return tokens, newest first; `tags` matches tokens having any of the tags."""
        ...

    async def expire_tokens(self, *, now: datetime | None = None, limit: int = 1000) -> list[str]:
        """pending -> expired for tokens whose `expires_at` <= now; their waiting jobs resume
        (a `resume` event {"token": id, "expired": true}). Return the expired ids."""
        ...

    async def purge(
        self,
        *,
        finished_before: datetime | None,
        events_before: datetime | None,
        limit: int = 1000,
    ) -> PurgeResult:
        """Delete up to `limit` completed/failed/cancelled jobs whose `completed_at` is before
        `finished_before` (with their events, steps, tags and tokens; their idempotency keys
        become free), and up to `limit` events older than `events_before`. None skips that
        part. Tokens created outside any job are not purged (yet)."""
        ...

    async def delete_jobs(self, ids: Sequence[int]) -> list[int]:
        """Delete those of `ids` that are finished (completed, failed, cancelled), with
        everything of theirs, as the purge does; return the ids deleted. Active jobs are left:
        cancel them first. (SQLite never deletes its newest job: its id would be reused.)"""
        ...

    # -- cron --------------------------------------------------------------------------------
    async def put_cron_job(self, cron: CronJob, *, now: datetime | None = None) -> CronJob:
        """Insert or replace the schedule `cron.name` (its definition, status and next_run_at
        as given); keep `last_run_at`, `last_job_id` and `created_at` of a replaced one."""
        ...

    async def get_cron_job(self, name: str) -> CronJob | None:
        """Return the schedule, or None."""
        ...

    async def list_cron_jobs(self, *, status: CronStatus | None = None) -> list[CronJob]:
        """Return schedules by name."""
        ...

    async def remove_cron_job(self, name: str) -> bool:
        """Delete the schedule (jobs it enqueued stay); False if there was none."""
        ...

    async def due_cron_jobs(
        self, *, now: datetime | None = None, limit: int = 100
    ) -> list[CronJob]:
        """Return active schedules whose `next_run_at` <= now, earliest first."""
        ...

    async def store_now(self) -> datetime:
        """The store's own clock: the database's where it has one (PostgreSQL's, through the
        measured offset; Redis' `TIME`), else this process's. The time `now=None` means."""
        ...

    async def fire_cron(
        self,
        *,
        name: str,
        tick: datetime,
        next_run_at: datetime | None,
        job: InsertJob,
        now: datetime | None = None,
    ) -> CronFire:
        """Fire one tick atomically, exactly once however many schedulers race.

        Only if the schedule is active and its `next_run_at` still equals `tick`: set
        `next_run_at` (None: no further tick), `last_run_at` = tick; then, unless
        `allow_overlap` is False and the job `last_job_id` is still pending, processing or
        waiting (then `skipped_overlap`), insert `job` (its `idempotency_key` is
        "cron:<name>:<tick iso>", so even a replayed tick gives one job) and set `last_job_id`.
        Otherwise change nothing and return `won=False`.
        """
        ...

    async def next_due(
        self,
        *,
        queue: str | None,
        job_types: Sequence[str] | None,
        now: datetime | None = None,
    ) -> datetime | None:
        """Return when the claimer may next find work: the earliest `run_at` of a pending job
        it could take whose job type and group admit it (flow limits), or when a rate window
        reopens for one held back by its rate; None when only a change can bring work."""
        ...

    # -- doors: worker presence, API keys, audit ---------------------------------------------
    async def beat_worker(self, info: WorkerInfo, *, now: datetime | None = None) -> None:
        """Record that a worker is alive (insert or replace it; `last_seen_at` is `now`)."""
        ...

    async def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly."""
        ...

    async def list_workers(self, *, seen_after: datetime | None = None) -> list[WorkerInfo]:
        """Return the workers seen after a time (all when None), oldest start first."""
        ...

    async def forget_workers(self, *, seen_before: datetime) -> int:
        """Delete workers not seen since a time (crashed ones); return how many."""
        ...

    async def put_api_key(self, key: ApiKey, secret_hash: str) -> None:
        """Store a new key by the hash of its secret.

        Raises:
            InvalidArgument: an active key has that name.
        """
        ...

    async def find_api_key(self, secret_hash: str) -> ApiKey | None:
        """Return the active key whose secret has this hash, or None."""
        ...

    async def list_api_keys(self) -> list[ApiKey]:
        """Return every key, revoked ones too, oldest first."""
        ...

    async def revoke_api_key(self, name: str, *, now: datetime | None = None) -> ApiKey | None:
        """Revoke the active key of that name; return it, or None when there is none."""
        ...

    async def write_audit(self, record: AuditRecord) -> AuditRecord:
        """Append an audit record; return it with its id (ids grow)."""
        ...

    async def list_audit(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> list[AuditRecord]:
        """Return audit records, newest first, older than `before_id` when given."""
        ...

    async def purge_audit(self, *, before: datetime, limit: int = 1000) -> int:
        """Delete up to `limit` of the oldest audit records before a time; return how many."""
        ...

    # -- flow limits -------------------------------------------------------------------------
    async def update_limit(
        self,
        scope: LimitScope,
        key: str,
        changes: dict[str, Any],
        *,
        now: datetime | None = None,
    ) -> Limit | None:
        """Set some fields of a job type's or group's limit atomically (a new limit starts
        empty); delete it when it then limits nothing. Return it (None: no limit left). Wakes
        waiting workers (a resumed type or a raised limit may let jobs run)."""
        ...

    async def list_limits(self) -> list[Limit]:
        """Return every limit, by scope then key."""
        ...

    async def remove_limit(self, scope: LimitScope, key: str) -> bool:
        """Delete a key's limit; False when it had none."""
        ...

    def change_token(self) -> int:
        """Return a token for `wait_for_change(since=...)`; take it before looking for work.

        Call from the event loop that will wait (it may start the store's change watcher).
        """
        ...

    async def wait_for_change(self, timeout: float, since: int | None = None) -> bool:
        """Sleep until the store may have changed (any commit, from any process) or `timeout`.

        Returns True when woken by a change, or at once when a change happened after the
        token `since` was taken. Spurious wake-ups are allowed; missed ones are not.
        """
        ...

    # -- operate -----------------------------------------------------------------------------
    async def get_job(self, job_id: int) -> Job | None:
        """Return the job, or None."""
        ...

    async def list_jobs(
        self, filter: JobFilter, *, limit: int, after_id: int | None, order: ListOrder
    ) -> list[Job]:
        """Return up to `limit` jobs matching `filter`, by id in `order`, after the cursor id."""
        ...

    async def cancel_job(self, job_id: int, *, now: datetime | None = None) -> Job:
        """Cancel: pending/waiting -> cancelled; processing -> cancel requested (the handler stops).

        Raises:
            JobNotFound: no such job.
            InvalidTransition: the job is already completed, failed or cancelled.
        """
        ...

    async def retry_job(self, job_id: int, *, now: datetime | None = None) -> Job:
        """Put a failed or cancelled job back to pending now, with its attempts reset to 0.

        Raises:
            JobNotFound: no such job.
            InvalidTransition: the job is not failed or cancelled.
        """
        ...

    async def edit_job(self, job_id: int, edit: JobEdit, *, now: datetime | None = None) -> Job:
        """Change fields of a pending job.

        Raises:
            JobNotFound: no such job.
            InvalidTransition: the job is not pending.
        """
        ...

    async def stats(self) -> QueueStats:
        """Count jobs per job type and status."""
        ...

    async def finished_counts(
        self, *, since: datetime, bucket_seconds: int
    ) -> list[tuple[int, JobStatus, int]]:
        """Count the jobs that finished (completed, failed, cancelled) at or after `since`, per
        bucket of their `completed_at`: rows of (bucket number, status, count), the bucket
        number being `floor(epoch seconds / bucket_seconds)`; buckets with no job are left
        out. Reads the finished-jobs index (the retention's), so it costs the jobs in the
        window, and a purged or retried job is no longer counted."""
        ...

    # -- maintain ----------------------------------------------------------------------------
    async def rescue_expired(self, *, now: datetime | None = None) -> list[int]:
        """Take back jobs whose lease expired: pending again if attempts remain, else failed.

        The expired attempt counts; a `rescue` event records the worker that lost it. A job
        whose cancel was requested ends `cancelled` instead of going back to pending.
        """
        ...

    # -- events ------------------------------------------------------------------------------
    async def job_events(self, job_id: int) -> list[JobEvent]:
        """Return one job's events, oldest first."""
        ...

    async def read_events(
        self,
        *,
        after: str | None,
        limit: int,
        job_id: int | None = None,
        job_types: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
    ) -> list[JobEvent]:
        """Return events after the cursor `after` (None: from the first), in commit order.

        The feed is gap-free: an event committed later never sorts before one already returned.

        Raises:
            InvalidArgument: `after` is not a cursor of this store.
        """
        ...

    async def latest_event_cursor(self) -> str | None:
        """Return the cursor of the newest event (None if there is none)."""
        ...

    # -- registry ----------------------------------------------------------------------------
    async def publish_job_types(
        self, types: Sequence[JobTypeInfo], *, now: datetime | None = None
    ) -> None:
        """Insert or replace job-type descriptions in the store's registry."""
        ...

    async def list_job_types(self) -> list[JobTypeInfo]:
        """Return every published job type, by name."""
        ...


@runtime_checkable
class RefreshesStatistics(Protocol):
    """A store whose query planner needs fresh table statistics (PostgreSQL): a queue table
    filled faster than autovacuum looks (20,000 jobs in a second, then drained) keeps the
    statistics of an empty table, and the planner then sorts every pending row on each claim
    instead of walking the claim index (a claim at 6,000 pending took 4 ms instead of 0.3)."""

    async def refresh_statistics(self) -> list[str]:
        """Refresh the statistics of the store's tables that changed a lot since they were
        last gathered (cheap when none did); return the tables refreshed."""
        ...


@runtime_checkable
class FinishesWithClaim(Protocol):
    """A store that writes a batch of outcomes and claims the next jobs in one transaction
    (SQLite): a busy worker's claim carries the outcomes waiting to be written, so one commit
    serves both."""

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
        """`finish(outcomes)` then `claim(...)` in one transaction: the ids whose lease was
        lost and the claimed jobs. An error means nothing was written (as far as the caller can
        tell: an outcome written twice is refused by its lease fence, never applied twice)."""
        ...


@runtime_checkable
class KnowsWhatIsDue(Protocol):
    """A store whose claims report what they left (PostgreSQL): while no change has been seen
    since, it knows without a round trip whether a claim would find anything. A worker then
    skips claims that would come back empty (after its own claim's or a freed slot's wake-up)
    and waits at once."""

    def due_known(
        self, *, queue: str | None, job_types: Sequence[str] | None
    ) -> tuple[bool, datetime | None]:
        """`(True, run_at)` when the store knows that, on its own clock, nothing this filter
        could claim is due before `run_at` (None: no pending job at all); `(False, None)` when
        only a round trip would tell."""
        ...


@runtime_checkable
class RingsOnChange(Protocol):
    """A store whose wake-up can resolve a future directly (SQLite, PostgreSQL): a worker's
    idle wait then awaits one future for "the store changed" and "a slot freed", instead of a
    task per event under `asyncio.wait` (several event-loop turns more between the wake-up and
    the claim)."""

    def ring_on_change(self, bell: asyncio.Future[None], since: int) -> Callable[[], None]:
        """Resolve `bell` when the store changes after the token `since` (at once if it has),
        as `wait_for_change(since=since)` would return; return a function that forgets the
        bell (call it once the wait is over, however it ended)."""
        ...


@runtime_checkable
class ClaimsAfterChange(Protocol):
    """A store that can wait for a change and claim in one step, with no round trip between
    the change and the claim (Redis). A worker's idle lanes use it instead of
    `wait_for_change` followed by `claim`."""

    async def claim_after_change(
        self,
        *,
        worker_id: str,
        queue: str | None,
        job_types: Sequence[str] | None,
        limit: int,
        lease_seconds: float,
        since: int,
        timeout: float,
        interrupt: asyncio.Event,
    ) -> list[Job]:
        """`claim` on the store's own clock, once the store changed after `since` (a change
        token taken before this worker's last claim with the same filter), `timeout` seconds
        passed, or `interrupt` was set; whichever comes first.

        It may claim early (a spurious wake-up); it never waits past a change. Jobs claimed
        here are this worker's exactly as from `claim`, including when `interrupt` ended the
        wait.
        """
        ...
