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
    ErrorRecord,
    Job,
    JobEdit,
    JobEvent,
    JobFilter,
    JobTypeInfo,
    ListOrder,
    QueueStats,
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
