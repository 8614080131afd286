"""The data every door speaks: pydantic models shared by Python, CLI, REST and MCP."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field, model_validator

from agentqueue.clock import utc
from agentqueue.states import JobStatus

JOB_TYPE_PATTERN = r"^[A-Za-z0-9_.:\-]{1,200}$"
QUEUE_PATTERN = r"^[A-Za-z0-9_.:\-]{1,100}$"
MAX_TAG_LENGTH = 200
MAX_JOB_ID = 2**63 - 1
"""The largest id a store can hold (a signed 64-bit integer)."""
JobIdValue = Annotated[int, Field(ge=1, le=MAX_JOB_ID)]
MAX_SECONDS = 10 * 365.25 * 86_400
"""The longest delay, timeout or window a job takes (ten years): further is a mistake, and
times that far out overflow some stores' clocks."""
"""A job id as input: an id no store can hold is refused, never passed on."""

AwareDatetime = Annotated[datetime, AfterValidator(utc)]
"""A datetime that must carry a time zone; stored and returned as UTC."""


class FailureReason(StrEnum):
    """Why an attempt failed."""

    HANDLER_ERROR = "handler_error"
    """The handler raised."""
    TIMEOUT = "timeout"
    """The handler ran past the job's `timeout`."""
    NO_HANDLER = "no_handler"
    """The worker that claimed the job has no handler for its type."""
    PAYLOAD_INVALID = "payload_invalid"
    """The stored payload no longer matches the handler's model (not retried)."""
    LEASE_EXPIRED = "lease_expired"
    """The worker stopped heartbeating (crash, kill, hang) and the lease ran out."""
    DEPENDENCY_FAILED = "dependency_failed"
    """A job this one depends on failed or was cancelled, so this one was cancelled."""


class TagMode(StrEnum):
    """How `list_jobs(tags=...)` matches a job's tags."""

    ANY = "any"
    """The job has at least one of the tags."""
    ALL = "all"
    """The job has every one of the tags (and maybe more)."""
    EXACT = "exact"
    """The job's tags are exactly these."""
    NONE = "none"
    """The job has none of the tags."""


class ErrorRecord(BaseModel):
    """One failed attempt, as kept in `Job.error_history`."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    at: datetime
    reason: FailureReason
    message: str
    traceback: str | None = None


def check_text(value: str) -> str:
    """Return `value`, or raise ValueError for text some store cannot hold as it is: NUL
    (PostgreSQL's text refuses it) or a lone surrogate (not Unicode; SQLite's driver and
    PostgreSQL refuse it). Every store then takes or refuses the same names, tags and filters."""
    if "\x00" in value:
        raise ValueError(f"text cannot hold NUL (\\u0000): {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"text holds a lone surrogate (not Unicode): {value!r}") from None
    return value


Text = Annotated[str, AfterValidator(check_text)]
"""A string every store can hold (see `check_text`)."""


def check_tags(tags: list[str]) -> list[str]:
    """Return the tags without duplicates (first kept), or raise ValueError for a bad tag."""
    seen: list[str] = []
    for tag in tags:
        if not tag or len(tag) > MAX_TAG_LENGTH:
            raise ValueError(f"a tag must be 1-{MAX_TAG_LENGTH} characters, got {tag!r}")
        check_text(tag)
        if tag not in seen:
            seen.append(tag)
    return seen


Tag = Annotated[str, Field(min_length=1, max_length=MAX_TAG_LENGTH)]
"""One tag: 1-200 characters (the JSON Schema says so too)."""
Tags = Annotated[list[Tag], AfterValidator(check_tags)]
"""A job's or token's tags, duplicates dropped."""


class JobOptions(BaseModel):
    """Options of one job, shared by `add_job`, `NewJob` and handler defaults.

    `None` means "take the handler's default, else the queue's default".
    """

    model_config = ConfigDict(extra="forbid")

    queue: Annotated[str, Field(pattern=QUEUE_PATTERN)] | None = None
    priority: int | None = Field(
        strict=True,
        default=None,
        ge=-1_000_000,
        le=1_000_000,
        description="higher runs first (default 0)",
    )
    run_at: AwareDatetime | None = Field(default=None, description="do not run before this time")
    delay: float | None = Field(
        strict=True, default=None, ge=0, le=MAX_SECONDS, description="seconds from now; or run_at"
    )
    tags: Tags = Field(default_factory=list)
    max_attempts: int | None = Field(strict=True, default=None, ge=1, le=1000)
    retry_delay: float | None = Field(
        strict=True, default=None, ge=0, le=MAX_SECONDS, description="seconds before a retry"
    )
    retry_backoff: bool | None = Field(default=None, description="double the delay each attempt")
    retry_delay_max: float | None = Field(
        strict=True, default=None, ge=0, le=MAX_SECONDS, description="cap on the delay"
    )
    timeout: float | None = Field(
        strict=True, default=None, gt=0, le=MAX_SECONDS, description="seconds per attempt"
    )
    force_kill_on_timeout: bool | None = Field(
        default=None,
        description="run the handler in a child process that is killed at the timeout "
        "(for CPU-bound or hung code; no steps, waits or tokens there)",
    )
    idempotency_key: Annotated[str, Field(min_length=1, max_length=400)] | None = None
    idempotency_window: float | None = Field(
        strict=True,
        default=None,
        gt=0,
        le=MAX_SECONDS,
        description="seconds after the first job's creation during which its idempotency_key "
        "returns it; after that the key may create a new job (default: for as long as the "
        "job is kept)",
    )
    group: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="a group of jobs (a tenant, a user, an API account) that shares the "
        "group's concurrency and rate limits across all workers",
    )
    dead_letter_job_type: Annotated[str, Field(pattern=JOB_TYPE_PATTERN)] | None = Field(
        default=None,
        description="after the last failed attempt, enqueue a job of this type whose payload "
        "is a DeadLetter envelope (the job, its payload and its failure)",
    )


class NewJob(JobOptions):
    """A job to enqueue: its type, its payload and its options."""

    job_type: Annotated[str, Field(pattern=JOB_TYPE_PATTERN)]
    payload: Any = Field(default_factory=dict)
    ref: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="a name for this job inside one add_jobs call, so later jobs of the same "
        "call can list it in depends_on before it has an id",
    )
    depends_on: list[JobIdValue | Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list[int | str],
        description="run only after all these jobs completed: job ids, or the ref of an "
        "earlier job in the same add_jobs call; a failed or cancelled one cancels this job",
    )
    depends_on_tags: Tags = Field(
        default_factory=list[str],
        description="run only after every job that carries one of these tags and has not "
        "finished when this job is added has completed (a drain of those jobs)",
    )


class Job(BaseModel):
    """A stored job and everything known about it."""

    model_config = ConfigDict(frozen=True)

    id: int
    queue: str
    job_type: str
    payload: Any
    status: JobStatus
    priority: int
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    attempts: int
    max_attempts: int
    locked_by: str | None = None
    lease_expires_at: datetime | None = None
    last_error: str | None = None
    failure_reason: FailureReason | None = None
    error_history: list[ErrorRecord] = Field(default_factory=list[ErrorRecord])
    tags: list[str] = Field(default_factory=list[str])
    idempotency_key: str | None = None
    timeout: float | None = None
    retry_delay: float
    retry_backoff: bool
    retry_delay_max: float | None = None
    progress: int = 0
    progress_message: str | None = None
    output: Any = None
    cancel_requested: bool = False
    force_kill_on_timeout: bool = False
    waiting_for: str | None = None
    """While `waiting`: the token the job waits on (None for a durable sleep). `run_at` is when
    it wakes anyway (the token's expiry, the sleep's end, or `FOREVER`)."""
    group: str | None = None
    """The job's group: the group's concurrency and rate limits apply to it."""
    dead_letter_job_type: str | None = None
    """The job type enqueued with a `DeadLetter` envelope after this job's last failed attempt."""
    idempotency_expires_at: datetime | None = None
    """When `idempotency_key` stops returning this job (None: while the job is kept)."""
    depends_on: list[int] = Field(default_factory=list[int])
    """The jobs this one runs after (it is `blocked` until all of them completed)."""
    origin: Origin | None = None
    """Who asked for it through REST or MCP (None: added from Python)."""


class Origin(BaseModel):
    """Who asked for a job through a door: the door, the caller (an API key's name, or
    `local`), and for MCP the client's name and session."""

    model_config = ConfigDict(frozen=True)

    door: str
    """`rest`, `mcp` or `python` (set by whoever adds the job)."""
    actor: str
    client: str | None = None
    """The MCP client's name (`clientInfo.name`), e.g. `claude-code`."""
    session: str | None = None


class LimitScope(StrEnum):
    """What a flow limit applies to."""

    JOB_TYPE = "job_type"
    """Every job of one job type, across all workers."""
    GROUP = "group"
    """Every job of one group (`key` a group name, or `*`: each group on its own)."""


ANY_GROUP = "*"
"""The key of the group limit that applies to every group without a limit of its own."""


class Limit(BaseModel):
    """A flow limit, enforced at claim time across every worker of the store.

    A job runs only when both its job type's limit and its group's limit admit it. A group's
    own limit replaces the `*` limit for that group.
    """

    model_config = ConfigDict(frozen=True)

    scope: LimitScope
    key: Annotated[str, Field(min_length=1, max_length=200)]
    """The job type or group name (`*` for every group)."""
    max_concurrent: int | None = Field(
        default=None, ge=0, description="most jobs processing at once (None: no limit)"
    )
    rate_limit: int | None = Field(
        default=None,
        ge=1,
        description="most jobs started per rate_period seconds, in any such window (None: no "
        "limit)",
    )
    rate_period: float = Field(
        default=1.0, gt=0, le=86_400 * 7, description="the window of rate_limit, in seconds"
    )
    paused: bool = False
    """Job types only: no job of the type is started until it is resumed."""
    updated_at: datetime | None = None

    @model_validator(mode="after")
    def _paused_job_types_only(self) -> Limit:
        if self.paused and self.scope is not LimitScope.JOB_TYPE:
            raise ValueError("only job types are paused; a group is limited with max_concurrent=0")
        if self.key == ANY_GROUP and self.scope is not LimitScope.GROUP:
            raise ValueError("'*' names every group; a job type limit names one job type")
        return self

    @property
    def empty(self) -> bool:
        """Whether it limits nothing (no concurrency or rate limit, not paused)."""
        return self.max_concurrent is None and self.rate_limit is None and not self.paused


class WorkerInfo(BaseModel):
    """A worker process as it announces itself in the store (every few seconds while it runs)."""

    model_config = ConfigDict(frozen=True)

    id: str
    hostname: str
    pid: int
    queues: list[str] = Field(default_factory=list[str])
    """The queues it claims from (empty: every queue)."""
    job_types: list[str] = Field(default_factory=list[str])
    """The job types it has handlers for."""
    concurrency: int
    running: int = 0
    """Jobs it was running at its last beat."""
    started_at: datetime
    last_seen_at: datetime


class ApiScope(StrEnum):
    """What an API key may do; each scope includes the ones before it."""

    READ = "read"
    """Read jobs, events, tokens, schedules, stats, metrics."""
    OPERATE = "operate"
    """Also add, cancel, retry and edit jobs, complete tokens, manage cron and limits."""
    ADMIN = "admin"
    """Also bulk purges and reading the audit log."""

    def allows(self, needed: ApiScope) -> bool:
        """Whether a key of this scope may do what `needed` guards."""
        order = list(ApiScope)
        return order.index(self) >= order.index(needed)


class ApiKey(BaseModel):
    """An API key as the store keeps it: never the secret, only its hash."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    scope: ApiScope
    created_at: datetime
    revoked_at: datetime | None = None


class AuditRecord(BaseModel):
    """One mutating call through a door: who, what, on what, when, and how it ended."""

    model_config = ConfigDict(frozen=True)

    id: int = 0
    """Assigned by the store (0 before it is written)."""
    at: datetime
    actor: str
    """The API key's name (`local` on an open loopback server)."""
    door: str
    """`rest` or `mcp`."""
    action: str
    """The operation, e.g. `add_job`, `cancel_job`, `complete_token`."""
    target: str | None = None
    """The job id, token id, schedule name … it acted on."""
    result: str
    """`ok`, or the error code it ended with."""
    details: dict[str, Any] = Field(default_factory=dict[str, Any])


class DeadLetter(BaseModel):
    """The payload of a dead-letter job: the job that failed for good and how it failed.

    Annotate a dead-letter handler's payload with it: `async def on_dead(letter: DeadLetter)`.
    """

    job_id: int
    job_type: str
    queue: str
    payload: Any
    attempts: int
    tags: list[str] = Field(default_factory=list[str])
    group: str | None = None
    failed_at: datetime
    error: ErrorRecord | None = None
    """The last attempt's error (also the newest entry of `error_history`)."""
    error_history: list[ErrorRecord] = Field(default_factory=list[ErrorRecord])


class EventType(StrEnum):
    """Kinds of job events; the state-changing ones share their names with `Transition`."""

    ADDED = "added"
    CLAIM = "claim"
    COMPLETE = "complete"
    RETRY_LATER = "retry_later"
    FAIL = "fail"
    RELEASE = "release"
    RESCUE = "rescue"
    WAIT = "wait"
    RESUME = "resume"
    UNBLOCK = "unblock"
    CANCEL = "cancel"
    CANCEL_REQUESTED = "cancel_requested"
    RETRY = "retry"
    EDIT = "edit"
    PROGRESS = "progress"
    OUTPUT = "output"
    STEP = "step"


class JobEvent(BaseModel):
    """One entry of a job's history, and one item of the cross-process event feed."""

    model_config = ConfigDict(frozen=True)

    id: int
    job_id: int
    job_type: str
    queue: str
    type: EventType
    status: JobStatus
    """The job's status right after the event."""
    at: datetime
    data: dict[str, Any] = Field(default_factory=dict[str, Any])
    cursor: str = ""
    """Position of the event in the store's feed: pass it as `Queue.events(after=...)` to resume
    right after it (an opaque string; on SQLite it is the id)."""


class JobFilter(BaseModel):
    """Which jobs `list_jobs` returns; every field narrows the set."""

    model_config = ConfigDict(extra="forbid")

    status: list[JobStatus] | None = None
    job_type: list[Text] | None = None
    queue: list[Text] | None = None
    tags: list[Text] | None = None
    tag_mode: TagMode = TagMode.ANY
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    run_at_after: AwareDatetime | None = None
    run_at_before: AwareDatetime | None = None
    created_by: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    """Only jobs whose origin's actor is this (an API key's name, or `local`)."""


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a keyset-paginated list; pass `next_cursor` back to get the next page."""

    items: list[T]
    next_cursor: str | None = None


class JobEdit(BaseModel):
    """Fields `edit_job` may change on a pending job; unset fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    payload: Any = None
    priority: int | None = Field(strict=True, default=None, ge=-1_000_000, le=1_000_000)
    run_at: AwareDatetime | None = None
    tags: Tags | None = None
    max_attempts: int | None = Field(strict=True, default=None, ge=1, le=1000)
    retry_delay: float | None = Field(strict=True, default=None, ge=0, le=MAX_SECONDS)
    retry_backoff: bool | None = None
    retry_delay_max: float | None = Field(strict=True, default=None, ge=0, le=MAX_SECONDS)
    timeout: float | None = Field(strict=True, default=None, gt=0, le=MAX_SECONDS)
    queue: Annotated[str, Field(pattern=QUEUE_PATTERN)] | None = None

    @model_validator(mode="after")
    def _refuse_null_for_required_fields(self) -> JobEdit:
        # None is the "not given" default, so an explicit null (e.g. JSON null from a door)
        # would otherwise reach the store as NULL in a NOT NULL column.
        nulls = sorted(
            name
            for name in self.model_fields_set
            if getattr(self, name) is None and name not in _NULLABLE_EDITS
        )
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null (leave a field out to keep it)")
        return self


_NULLABLE_EDITS = frozenset({"payload", "timeout", "retry_delay_max"})
"""`JobEdit` fields that may be set to null: no timeout, no cap on the retry delay."""


class JobTypeInfo(BaseModel):
    """A job type as published in the store's registry."""

    name: str
    description: str = ""
    queue: str = "default"
    payload_schema: dict[str, Any] = Field(default_factory=dict[str, Any])
    examples: list[Any] = Field(default_factory=list[Any])
    defaults: JobOptions = Field(default_factory=JobOptions)
    """The handler's job options (max_attempts, retry_delay, timeout …), applied by any process
    that enqueues this type, not only the one that imported the handler."""
    updated_at: datetime | None = None


class QueueStats(BaseModel):
    """Job counts per job type and status, plus totals per status."""

    by_type: dict[str, dict[JobStatus, int]]
    totals: dict[JobStatus, int]


class ThroughputBucket(BaseModel):
    """Jobs that finished in one time bucket (by their `completed_at`)."""

    start: datetime
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @computed_field
    @property
    def failure_rate(self) -> float | None:
        """Failed / (completed + failed) in this bucket; None when neither happened."""
        ended = self.completed + self.failed
        return self.failed / ended if ended else None


class Throughput(BaseModel):
    """Finished jobs per bucket over a window ending now, oldest bucket first, with no gaps
    (a bucket where nothing finished has zero counts)."""

    bucket_seconds: int
    since: datetime
    """The start of the first bucket."""
    until: datetime
    """When the counts were read (inside the last bucket)."""
    buckets: list[ThroughputBucket]


class ListOrder(StrEnum):
    """Sort order of `list_jobs`."""

    NEWEST = "newest"
    OLDEST = "oldest"


FOREVER = datetime(9999, 12, 31, tzinfo=UTC)
"""`run_at` of a job waiting on a token that never expires: only the token wakes it."""


class TokenStatus(StrEnum):
    """Where a human-in-the-loop token is in its life."""

    PENDING = "pending"
    """Waiting for `complete_token`."""
    COMPLETED = "completed"
    """Completed with data; the job waiting on it (if any) was resumed."""
    EXPIRED = "expired"
    """Its timeout passed first; the job waiting on it resumes and sees `ok=False`."""


class Token(BaseModel):
    """A human-in-the-loop token: a handler waits on it, a person or a service completes it."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: TokenStatus
    job_id: int | None = None
    """The job whose handler created it (None: created with `Queue.create_token`)."""
    created_at: datetime
    expires_at: datetime | None = None
    completed_at: datetime | None = None
    """When it was completed or expired."""
    data: Any = None
    """What `complete_token` was given."""
    tags: list[str] = Field(default_factory=list[str])


class TokenResult(BaseModel):
    """What `JobContext.wait_for_token` returns: `ok=True` with the data, or `ok=False` when the
    token expired first."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    data: Any = None
    token: Token


CRON_NAME_PATTERN = r"^[A-Za-z0-9_.:\-]{1,200}$"


class CronStatus(StrEnum):
    """Whether a cron schedule fires."""

    ACTIVE = "active"
    PAUSED = "paused"


class CronJob(BaseModel):
    """A stored cron schedule: which job to enqueue at each tick of an expression."""

    model_config = ConfigDict(frozen=True)

    name: str
    expression: str
    """5 fields, 6 with a leading seconds field, or an alias such as @daily."""
    timezone: str = "UTC"
    job_type: str
    payload: Any = Field(default_factory=dict)
    options: JobOptions = Field(default_factory=JobOptions)
    """Options of each enqueued job (queue, priority, max_attempts, retry_*, tags, timeout)."""
    allow_overlap: bool = False
    """False: skip a tick while the job of the previous tick is still pending/processing/waiting."""
    dead_letter_job_type: str | None = None
    status: CronStatus = CronStatus.ACTIVE
    next_run_at: datetime | None = None
    """The next tick (UTC); None while paused."""
    last_run_at: datetime | None = None
    """The last tick that fired (or was skipped for overlap)."""
    last_job_id: int | None = None
    """The job the last fired tick enqueued."""
    created_at: datetime | None = None
    updated_at: datetime | None = None


class BulkResult(BaseModel):
    """What a bulk operation matched and changed (with `dry_run`: what it would change)."""

    dry_run: bool
    matched: int = 0
    """Jobs the filter matched in the states the operation applies to."""
    changed: int = 0
    """Jobs changed (0 with dry_run)."""
    skipped: list[int] = Field(default_factory=list[int])
    """Jobs that moved on between listing and change (completed meanwhile, say)."""
    sample: list[Job] = Field(default_factory=list[Job])
    """Up to 10 of the jobs, as they are after the change (before it, with dry_run)."""


class MaintenanceReport(BaseModel):
    """What one supervisor pass did."""

    rescued: list[int] = Field(default_factory=list[int])
    """Jobs whose lease had expired: pending again, or failed on their last attempt."""
    resumed: list[int] = Field(default_factory=list[int])
    """Waiting jobs whose time came (durable sleeps, token waits past the token's expiry)."""
    expired_tokens: list[str] = Field(default_factory=list[str])
    cron_fired: list[int] = Field(default_factory=list[int])
    """Jobs enqueued by cron ticks in this pass."""
    deleted_jobs: int = 0
    """Completed, failed and cancelled jobs older than the retention, with their events."""
    deleted_events: int = 0
    """Events older than the retention (of jobs still kept)."""
    deleted_audit: int = 0
    """Audit records older than their retention (90 days by default)."""
    forgotten_workers: int = 0
    """Workers not seen for a day (crashed), no longer listed."""
    analyzed: list[str] = Field(default_factory=list[str])
    """Tables whose planner statistics were stale and were refreshed (PostgreSQL `ANALYZE`)."""

    @property
    def changed(self) -> bool:
        """True when the pass did anything."""
        return bool(
            self.rescued
            or self.resumed
            or self.expired_tokens
            or self.cron_fired
            or self.deleted_jobs
            or self.deleted_events
            or self.deleted_audit
            or self.forgotten_workers
            or self.analyzed
        )
