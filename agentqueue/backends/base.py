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

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from agentqueue.models import (
    CronJob,
    CronStatus,
    ErrorRecord,
    Job,
    JobEdit,
    JobEvent,
    JobFilter,
    JobTypeInfo,
    ListOrder,
    QueueStats,
    Token,
    TokenStatus,
)


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


@dataclass(frozen=True, slots=True)
class InsertResult:
    """The id a job got, and whether this call created it (False: idempotency-key duplicate)."""

    id: int
    created: bool


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
    ) -> list[InsertResult]:
        """Store jobs atomically (all or none), one `added` event each; results in input order.

        With `connection` (stores whose capabilities say `transactional_enqueue`), the rows are
        written on the caller's connection inside the caller's transaction.

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
        self, *, queue: str | None, job_types: Sequence[str] | None
    ) -> datetime | None:
        """Return the earliest `run_at` of a pending job the claimer could take, if any."""
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
