"""Structured replies of the MCP tools (the core's models, wrapped where a tool returns a list,
so every tool has an output schema an agent can rely on)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from agentqueue.models import (
    BulkResult,
    CronJob,
    Job,
    JobEvent,
    JobTypeInfo,
    QueueStats,
    Token,
    WorkerInfo,
)
from agentqueue.requests import AddedJob


class AddedJobs(BaseModel):
    """The jobs one `add_jobs` call added (in input order)."""

    jobs: list[AddedJob]


class JobEvents(BaseModel):
    """A job's history, oldest first."""

    job_id: int
    events: list[JobEvent]


class Tokens(BaseModel):
    """Tokens, newest first."""

    tokens: list[Token]


class CronJobs(BaseModel):
    """Schedules by name."""

    cron_jobs: list[CronJob]


class JobTypes(BaseModel):
    """The job types the store knows."""

    job_types: list[JobTypeInfo]


class Stats(BaseModel):
    """Jobs per type and status, and the live workers."""

    stats: QueueStats
    workers: list[WorkerInfo]


class BulkPreview(BaseModel):
    """What a bulk call would change: count, sample, and the id that confirms it."""

    result: BulkResult
    confirmation_id: str | None = None
    """Call the tool again with this id (and dry_run=false) to act on exactly this filter."""
    expires_at: datetime | None = None


class WaitResult(BaseModel):
    """Where a job is after `wait_for_job`: ended (with its output), or still going."""

    done: bool
    """True when the job completed, failed or was cancelled within the wait."""
    timed_out: bool
    job: Job


class DocHit(BaseModel):
    """A docs page that matches a search."""

    uri: str
    title: str
    score: float
    excerpt: str


class DocHits(BaseModel):
    """Docs pages, best match first."""

    hits: list[DocHit] = Field(default_factory=list[DocHit])
