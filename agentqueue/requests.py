"""Request and reply models the doors share (REST bodies, MCP tool inputs), built from the core
models so the OpenAPI document and the tool schemas say exactly what the core accepts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from agentqueue.models import (
    CRON_NAME_PATTERN,
    JOB_TYPE_PATTERN,
    MAX_SECONDS,
    CronJob,
    Job,
    JobEdit,
    JobFilter,
    JobOptions,
    NewJob,
    Tags,
)

if TYPE_CHECKING:
    from agentqueue.queue import Queue


class AddedJob(BaseModel):
    """What adding a job answers: its id, whether this call created it, and the job."""

    id: int
    created: bool
    """False when an idempotency key returned an existing job."""
    job: Job


class AddJobs(BaseModel):
    """Several jobs added atomically (all or none); `ref`s link jobs of the same call."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[NewJob] = Field(min_length=1, max_length=1000)


class BulkFilter(JobFilter):
    """Which jobs a bulk operation acts on (the `list_jobs` filters) and whether to only
    preview (`dry_run`: count and sample, change nothing)."""

    dry_run: bool = False


class BulkEdit(BulkFilter):
    """A bulk edit of pending jobs: the filter, and the fields to change."""

    changes: JobEdit


class TokenCreate(BaseModel):
    """A token made outside any handler (a person or service completes it)."""

    model_config = ConfigDict(extra="forbid")

    timeout: float | None = Field(
        default=None,
        strict=True,
        gt=0,
        le=MAX_SECONDS,
        description="seconds until it expires (none: it waits forever)",
    )
    tags: Tags = Field(default_factory=list[str])


class TokenComplete(BaseModel):
    """The data a token is completed with (the waiting handler receives it)."""

    model_config = ConfigDict(extra="forbid")

    data: Any = None


class CronCreate(JobOptions):
    """A cron schedule: its name, expression, time zone and the job each tick enqueues."""

    name: Annotated[str, Field(pattern=CRON_NAME_PATTERN)]
    expression: str = Field(
        description="5 fields (minute hour day month weekday), 6 with leading seconds, or "
        "@hourly/@daily/@weekly/@monthly/@yearly"
    )
    job_type: Annotated[str, Field(pattern=JOB_TYPE_PATTERN)]
    payload: Any = Field(default_factory=dict)
    timezone: str = Field(default="UTC", description="an IANA zone, e.g. Europe/Berlin")
    allow_overlap: bool = Field(
        default=False, description="fire even while the previous tick's job is still active"
    )

    def options(self) -> dict[str, Any]:
        """The job options the schedule sets (only those given)."""
        skip = {"name", "expression", "job_type", "payload", "timezone", "allow_overlap"}
        skip |= {"dead_letter_job_type"}
        return {name: getattr(self, name) for name in self.model_fields_set - skip}

    async def add_to(self, queue: Queue) -> CronJob:
        """Store this schedule in `queue` (`Queue.add_cron_job`)."""
        return await queue.add_cron_job(
            self.name,
            self.expression,
            self.job_type,
            self.payload,
            timezone=self.timezone,
            allow_overlap=self.allow_overlap,
            dead_letter_job_type=self.dead_letter_job_type,
            **self.options(),
        )


class CronEdit(JobOptions):
    """Changes to a schedule; fields left out stay as they are."""

    expression: str | None = None
    job_type: Annotated[str, Field(pattern=JOB_TYPE_PATTERN)] | None = None
    payload: Any = None
    timezone: str | None = None
    allow_overlap: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The given fields, named as `Queue.edit_cron_job` takes them."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        if "expression" in given:
            given["cron_expression"] = given.pop("expression")
        return given


class LimitChange(BaseModel):
    """Changes to one job type's or group's limit; null removes that limit."""

    model_config = ConfigDict(extra="forbid")

    max_concurrent: int | None = Field(strict=True, default=None, ge=0)
    rate_limit: int | None = Field(strict=True, default=None, ge=1)
    rate_period: float | None = Field(strict=True, default=None, gt=0)

    def changes(self) -> dict[str, Any]:
        """The fields given."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class ApiKeyCreated(BaseModel):
    """A new API key and its secret (shown once; the store keeps only a hash)."""

    name: str
    scope: str
    id: str
    key: str
