"""The MCP tools: what an agent can do with the queue. Each tool checks its caller's scope
(read tools `read`, changes `operate`, bulk and cron `admin`), calls one `Queue` method, audits
changes with the key and the MCP client's name, and answers with the core's models."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from agentqueue import audit
from agentqueue.errors import InvalidArgument
from agentqueue.explain import Explanation
from agentqueue.mcp import docs
from agentqueue.mcp.access import Caller, LocalAccess, caller_of
from agentqueue.mcp.errors import fixable
from agentqueue.mcp.replies import (
    AddedJobs,
    BulkPreview,
    CronJobs,
    DocHits,
    JobEvents,
    JobTypes,
    Stats,
    Tokens,
    WaitResult,
)
from agentqueue.models import (
    ApiScope,
    CronJob,
    CronStatus,
    EventType,
    Job,
    JobEdit,
    JobIdValue,
    JobStatus,
    JobTypeInfo,
    NewJob,
    Page,
    TagMode,
    Token,
    TokenStatus,
)
from agentqueue.queue import Queue
from agentqueue.requests import AddedJob, CronCreate, CronEdit
from agentqueue.states import TERMINAL

READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
ADD = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
CHANGE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)
DESTROY = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)

JobIdArg = Annotated[JobIdValue, Field(description="the job's id")]
MAX_WAIT_SECONDS = 600.0
CONFIRM_SECONDS = 600.0


class Confirmations:
    """Confirmation ids of bulk previews: an id acts on exactly the previewed filter, once,
    within `CONFIRM_SECONDS`."""

    def __init__(self) -> None:
        self._issued: dict[str, tuple[str, float]] = {}

    @staticmethod
    def _digest(action: str, filters: dict[str, Any]) -> str:
        text = json.dumps([action, filters], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def issue(self, action: str, filters: dict[str, Any]) -> tuple[str, datetime]:
        """A new id for this action on this filter, and when it expires."""
        now = time.monotonic()
        self._issued = {k: v for k, v in self._issued.items() if v[1] > now}
        token = "confirm_" + secrets.token_urlsafe(12)
        self._issued[token] = (self._digest(action, filters), now + CONFIRM_SECONDS)
        return token, datetime.now(UTC) + timedelta(seconds=CONFIRM_SECONDS)

    def take(self, token: str, action: str, filters: dict[str, Any]) -> None:
        """Use up an id, or refuse it with how to get a valid one."""
        found = self._issued.pop(token, None)
        if found is None or found[1] < time.monotonic():
            raise InvalidArgument(
                f"unknown or expired confirmation id {token!r}: call {action} with "
                "dry_run=true first, then again with its confirmation_id"
            )
        if found[0] != self._digest(action, filters):
            raise InvalidArgument(
                "the filter differs from the one previewed: preview this filter with "
                "dry_run=true and use the confirmation_id it returns"
            )


class Kit:
    """What every tool needs: the queue, the caller's checks, auditing, confirmations."""

    def __init__(self, queue: Queue, local: LocalAccess) -> None:
        self.queue = queue
        self.local = local
        self.confirmations = Confirmations()

    def who(self, ctx: Context[Any, Any], needed: ApiScope) -> Caller:
        """The caller, refused unless its scope covers `needed`."""
        caller = caller_of(ctx, self.local)
        caller.require(needed)
        return caller

    @asynccontextmanager
    async def change(
        self, ctx: Context[Any, Any], needed: ApiScope, action: str, target: Any = None
    ) -> AsyncIterator[tuple[Caller, audit.AuditNote]]:
        """A mutating call: scope checked, core errors made fixable, the call audited."""
        caller = self.who(ctx, needed)
        async with (
            fixable(),
            audit.audited(
                self.queue,
                actor=caller.actor,
                door="mcp",
                action=action,
                target=target,
                client=caller.client,
            ) as note,
        ):
            yield caller, note

    async def job(self, job_id: int) -> Job:
        """The job, or a tool error saying it does not exist."""
        job = await self.queue.get_job(job_id)
        if job is None:
            raise ToolError(f"[job_not_found] job {job_id} does not exist (list_jobs finds jobs)")
        return job


def register(server: MCPServer[Any], queue: Queue, local: LocalAccess) -> None:
    """Add every tool to `server`."""
    kit = Kit(queue, local)
    for group in (_jobs, _changes, _bulk, _watch, _types, _tokens, _cron):
        group(server, kit)


def _jobs(server: MCPServer[Any], kit: Kit) -> None:
    queue, who, change, require_job = kit.queue, kit.who, kit.change, kit.job

    @server.tool(annotations=ADD)
    async def add_job(
        ctx: Context[Any, Any],
        job_type: Annotated[str, Field(description="the job type (see list_job_types)")],
        payload: Annotated[
            Any, Field(description="the job's input; must match the type's payload schema")
        ] = None,
        priority: Annotated[
            int | None, Field(strict=True, description="higher runs first (0)")
        ] = None,
        delay: Annotated[
            float | None, Field(strict=True, description="seconds from now before it runs")
        ] = None,
        run_at: Annotated[datetime | None, Field(description="ISO time it may run from")] = None,
        tags: Annotated[list[str] | None, Field(description="labels to find it by")] = None,
        queue_name: Annotated[str | None, Field(description="the queue (the type's)")] = None,
        idempotency_key: Annotated[
            str | None, Field(description="a second add with this key returns the first job")
        ] = None,
        max_attempts: Annotated[
            int | None, Field(strict=True, description="attempts before it fails")
        ] = None,
        timeout: Annotated[
            float | None, Field(strict=True, description="seconds per attempt")
        ] = None,
        depends_on: Annotated[
            list[int] | None, Field(description="run after these jobs completed")
        ] = None,
        group: Annotated[
            str | None, Field(description="a group (tenant) whose limits apply")
        ] = None,
    ) -> AddedJob:
        """Enqueue one job. Returns its id and the stored job; check the payload against
        describe_job_type first. The job remembers it was added by you (list_jobs mine=true)."""
        given = {
            "priority": priority,
            "delay": delay,
            "run_at": run_at,
            "tags": tags,
            "queue": queue_name,
            "idempotency_key": idempotency_key,
            "max_attempts": max_attempts,
            "timeout": timeout,
            "depends_on": depends_on,
            "group": group,
        }
        options = {name: value for name, value in given.items() if value is not None}
        async with change(ctx, ApiScope.OPERATE, "add_job", job_type) as (caller, note):
            ((job_id, stored),) = await queue.add_jobs_returning(
                [{"job_type": job_type, "payload": {} if payload is None else payload, **options}],
                origin=caller.origin(),
                audit=note.adding(audit.added_id),
            )
        return AddedJob(id=job_id, created=job_id.created, job=stored)

    @server.tool(annotations=ADD)
    async def add_jobs(
        ctx: Context[Any, Any],
        jobs: Annotated[
            list[NewJob],
            Field(
                min_length=1,
                max_length=1000,
                description="the jobs, added all or none; a job may set `ref` and later jobs "
                "list that ref in `depends_on`",
            ),
        ],
    ) -> AddedJobs:
        """Enqueue several jobs atomically (all or none), e.g. a pipeline whose steps depend on
        each other by ref."""
        async with change(ctx, ApiScope.OPERATE, "add_jobs", f"{len(jobs)} jobs") as (c, note):
            added = await queue.add_jobs_returning(
                jobs, origin=c.origin(), audit=note.adding(audit.added_many)
            )
        return AddedJobs(jobs=[AddedJob(id=i, created=i.created, job=job) for i, job in added])

    @server.tool(annotations=READ)
    async def get_job(ctx: Context[Any, Any], job_id: JobIdArg) -> Job:
        """One job: status, progress, output, errors, everything."""
        who(ctx, ApiScope.READ)
        return await require_job(job_id)

    @server.tool(annotations=READ)
    async def list_jobs(
        ctx: Context[Any, Any],
        status: Annotated[list[JobStatus] | None, Field(description="only these statuses")] = None,
        job_type: Annotated[list[str] | None, Field(description="only these types")] = None,
        tags: Annotated[list[str] | None, Field(description="jobs with these tags")] = None,
        tag_mode: Annotated[TagMode, Field(description="any, all, exact or none")] = TagMode.ANY,
        mine: Annotated[bool, Field(description="only jobs you added")] = False,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor of the last page")] = None,
    ) -> Page[Job]:
        """Jobs, newest first, one page at a time (follow next_cursor). `mine` finds the
        jobs you added before, even in an earlier conversation."""
        caller = who(ctx, ApiScope.READ)
        async with fixable():
            return await queue.list_jobs(
                status=status,
                job_type=job_type,
                tags=tags,
                tag_mode=tag_mode,
                created_by=caller.actor if mine else None,
                limit=limit,
                cursor=cursor,
            )

    @server.tool(annotations=READ)
    async def get_job_events(ctx: Context[Any, Any], job_id: JobIdArg) -> JobEvents:
        """A job's history, oldest first (claims, progress, retries, waits, outcomes)."""
        who(ctx, ApiScope.READ)
        async with fixable():
            return JobEvents(job_id=job_id, events=await queue.get_job_events(job_id))


def _changes(server: MCPServer[Any], kit: Kit) -> None:
    queue, change = kit.queue, kit.change

    @server.tool(annotations=DESTROY)
    async def cancel_job(ctx: Context[Any, Any], job_id: JobIdArg) -> Job:
        """Cancel a job: a blocked, pending or waiting one at once (its dependents too); a
        running one is asked to stop."""
        async with change(ctx, ApiScope.OPERATE, "cancel_job", job_id):
            return await queue.cancel_job(job_id)

    @server.tool(annotations=CHANGE)
    async def retry_job(ctx: Context[Any, Any], job_id: JobIdArg) -> Job:
        """Run a failed or cancelled job again with fresh attempts."""
        async with change(ctx, ApiScope.OPERATE, "retry_job", job_id):
            return await queue.retry_job(job_id)

    @server.tool(annotations=CHANGE)
    async def edit_job(
        ctx: Context[Any, Any],
        job_id: JobIdArg,
        changes: Annotated[JobEdit, Field(description="only the fields to change")],
    ) -> Job:
        """Change a pending job (payload, priority, run_at, tags, retries, timeout, queue)."""
        fields = {name: getattr(changes, name) for name in changes.model_fields_set}
        async with change(ctx, ApiScope.OPERATE, "edit_job", job_id):
            return await queue.edit_job(job_id, **fields)


def _bulk(server: MCPServer[Any], kit: Kit) -> None:
    queue, who, change, confirmations = kit.queue, kit.who, kit.change, kit.confirmations

    def bulk_filters(
        status: list[JobStatus] | None, job_type: list[str] | None, tags: list[str] | None
    ) -> dict[str, Any]:
        given = {"status": status, "job_type": job_type, "tags": tags}
        return {name: value for name, value in given.items() if value is not None}

    async def bulk(
        ctx: Context[Any, Any],
        action: str,
        filters: dict[str, Any],
        dry_run: bool,
        confirmation_id: str | None,
    ) -> BulkPreview:
        run = queue.cancel_jobs if action == "cancel_jobs" else queue.retry_jobs
        if dry_run:
            who(ctx, ApiScope.ADMIN)
            async with fixable():
                preview = await run(dry_run=True, **filters)
            token, expires = confirmations.issue(action, filters)
            return BulkPreview(result=preview, confirmation_id=token, expires_at=expires)
        if confirmation_id is None:
            raise ToolError(
                f"{action} changes every matching job: call it with dry_run=true to see the "
                "count and a sample, then again with dry_run=false and its confirmation_id"
            )
        async with change(ctx, ApiScope.ADMIN, action, None) as (_, note):
            confirmations.take(confirmation_id, action, filters)
            result = await run(**filters)
            note["changed"] = result.changed
        return BulkPreview(result=result)

    @server.tool(annotations=DESTROY)
    async def cancel_jobs(
        ctx: Context[Any, Any],
        status: Annotated[list[JobStatus] | None, Field(description="statuses to cancel")] = None,
        job_type: Annotated[list[str] | None, Field(description="only these types")] = None,
        tags: Annotated[list[str] | None, Field(description="only jobs with these tags")] = None,
        dry_run: Annotated[bool, Field(description="preview only (first call)")] = True,
        confirmation_id: Annotated[
            str | None, Field(description="from the preview; confirms the change")
        ] = None,
    ) -> BulkPreview:
        """Cancel every active job matching the filter, in two calls: a preview (count,
        sample, confirmation_id), then the same filter with dry_run=false and the id."""
        filters = bulk_filters(status, job_type, tags)
        return await bulk(ctx, "cancel_jobs", filters, dry_run, confirmation_id)

    @server.tool(annotations=CHANGE)
    async def retry_jobs(
        ctx: Context[Any, Any],
        status: Annotated[
            list[JobStatus] | None, Field(description="failed and/or cancelled")
        ] = None,
        job_type: Annotated[list[str] | None, Field(description="only these types")] = None,
        tags: Annotated[list[str] | None, Field(description="only jobs with these tags")] = None,
        dry_run: Annotated[bool, Field(description="preview only (first call)")] = True,
        confirmation_id: Annotated[
            str | None, Field(description="from the preview; confirms the change")
        ] = None,
    ) -> BulkPreview:
        """Retry every failed or cancelled job matching the filter (a redrive), in two calls
        like cancel_jobs."""
        filters = bulk_filters(status, job_type, tags)
        return await bulk(ctx, "retry_jobs", filters, dry_run, confirmation_id)


def _watch(server: MCPServer[Any], kit: Kit) -> None:
    queue, who, require_job = kit.queue, kit.who, kit.job

    @server.tool(annotations=READ)
    async def wait_for_job(
        ctx: Context[Any, Any],
        job_id: JobIdArg,
        timeout_seconds: Annotated[
            float, Field(gt=0, le=MAX_WAIT_SECONDS, description="longest wait")
        ] = 60,
    ) -> WaitResult:
        """Wait until the job ends (up to timeout_seconds), sending progress notifications as
        it reports progress. Returns the job: its output when done, else the latest state."""
        who(ctx, ApiScope.READ)
        store = await queue._store()  # pyright: ignore[reportPrivateUsage]
        cursor = await store.latest_event_cursor()
        job = await require_job(job_id)
        if job.status in TERMINAL:
            return WaitResult(done=True, timed_out=False, job=job)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_seconds):
                async for event in queue.events(
                    after=cursor, from_start=cursor is None, job_id=job_id
                ):
                    if event.type is EventType.PROGRESS:
                        await ctx.report_progress(
                            float(event.data.get("progress") or 0), 100.0, event.data.get("message")
                        )
                    if event.status in TERMINAL:
                        break
        job = await require_job(job_id)
        done = job.status in TERMINAL
        return WaitResult(done=done, timed_out=not done, job=job)

    @server.tool(annotations=READ)
    async def explain_job(ctx: Context[Any, Any], job_id: JobIdArg) -> Explanation:
        """Why a job is not running, or why it failed: structured reasons (future run_at,
        unmet dependency, paused type or full limit, waiting on a token, no live worker for
        its type, expired lease, attempts exhausted with the last error)."""
        who(ctx, ApiScope.READ)
        async with fixable():
            return await queue.explain_job(job_id)


def _types(server: MCPServer[Any], kit: Kit) -> None:
    queue, who = kit.queue, kit.who

    @server.tool(annotations=READ)
    async def list_job_types(ctx: Context[Any, Any]) -> JobTypes:
        """The job types workers serve, with descriptions and payload schemas."""
        who(ctx, ApiScope.READ)
        return JobTypes(job_types=await queue.list_job_types())

    @server.tool(annotations=READ)
    async def describe_job_type(
        ctx: Context[Any, Any], name: Annotated[str, Field(description="the job type")]
    ) -> JobTypeInfo:
        """One job type: what it does, its payload JSON Schema, examples, default options."""
        who(ctx, ApiScope.READ)
        for info in await queue.list_job_types():
            if info.name == name:
                return info
        known = ", ".join(info.name for info in await queue.list_job_types()) or "none yet"
        raise ToolError(f"[not_found] no job type {name!r}; known: {known}")

    @server.tool(annotations=READ)
    async def queue_stats(ctx: Context[Any, Any]) -> Stats:
        """How many jobs are in each status per type, and which workers are alive."""
        who(ctx, ApiScope.READ)
        return Stats(stats=await queue.stats(), workers=await queue.list_workers())

    @server.tool(annotations=READ)
    async def search_docs(
        ctx: Context[Any, Any],
        query: Annotated[str, Field(min_length=1, max_length=200, description="words to find")],
        limit: Annotated[int, Field(ge=1, le=20)] = 5,
    ) -> DocHits:
        """Search agentqueue's documentation; read a hit with its agentqueue://docs/ URI."""
        who(ctx, ApiScope.READ)
        return docs.search(query, limit)


def _tokens(server: MCPServer[Any], kit: Kit) -> None:
    queue, who, change = kit.queue, kit.who, kit.change

    @server.tool(annotations=ADD)
    async def create_token(
        ctx: Context[Any, Any],
        timeout_seconds: Annotated[
            float | None,
            Field(strict=True, gt=0, description="expire after this long (none: never)"),
        ] = None,
        tags: Annotated[list[str] | None, Field(description="labels to find it by")] = None,
    ) -> Token:
        """A human-in-the-loop token outside any job (give its id to whoever completes it)."""
        async with change(ctx, ApiScope.OPERATE, "create_token") as (_, note):
            token = await queue.create_token(timeout=timeout_seconds, tags=tags)
            note["token_id"] = token.id
        return token

    @server.tool(annotations=ADD)
    async def complete_token(
        ctx: Context[Any, Any],
        token_id: Annotated[str, Field(description="the token's id (tok_…)")],
        data: Annotated[Any, Field(description="the answer the waiting job receives")] = None,
    ) -> Token:
        """Complete a pending token (approve, answer): the job waiting on it resumes with data."""
        async with change(ctx, ApiScope.OPERATE, "complete_token", token_id):
            return await queue.complete_token(token_id, data)

    @server.tool(annotations=READ)
    async def get_token(
        ctx: Context[Any, Any], token_id: Annotated[str, Field(description="the token's id")]
    ) -> Token:
        """One token: status, the job that made it, its expiry and data."""
        who(ctx, ApiScope.READ)
        async with fixable():
            token = await queue.get_token(token_id)
        if token is None:
            raise ToolError(f"[token_not_found] token {token_id!r} does not exist (list_tokens)")
        return token

    @server.tool(annotations=READ)
    async def list_tokens(
        ctx: Context[Any, Any],
        status: Annotated[list[TokenStatus] | None, Field(description="e.g. pending")] = None,
        tags: Annotated[list[str] | None, Field(description="tokens with these tags")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
    ) -> Tokens:
        """Tokens, newest first: pending ones are approvals waiting for an answer."""
        who(ctx, ApiScope.READ)
        async with fixable():
            return Tokens(tokens=await queue.list_tokens(status=status, tags=tags, limit=limit))


def _cron(server: MCPServer[Any], kit: Kit) -> None:
    queue, who, change = kit.queue, kit.who, kit.change

    @server.tool(annotations=CHANGE)
    async def add_cron_job(ctx: Context[Any, Any], schedule: CronCreate) -> CronJob:
        """Add (or replace) a recurring schedule: a cron expression, its time zone, and the job
        each tick enqueues. Exactly one job per tick however many workers run."""
        async with change(ctx, ApiScope.ADMIN, "add_cron_job", schedule.name):
            return await schedule.add_to(queue)

    @server.tool(annotations=READ)
    async def list_cron_jobs(
        ctx: Context[Any, Any],
        status: Annotated[CronStatus | None, Field(description="active or paused")] = None,
    ) -> CronJobs:
        """The schedules, with their next and last tick."""
        who(ctx, ApiScope.READ)
        return CronJobs(cron_jobs=await queue.list_cron_jobs(status))

    @server.tool(annotations=CHANGE)
    async def edit_cron_job(
        ctx: Context[Any, Any],
        name: Annotated[str, Field(description="the schedule's name")],
        changes: Annotated[CronEdit, Field(description="only the fields to change")],
    ) -> CronJob:
        """Change a schedule (expression, time zone, job type, payload, options)."""
        async with change(ctx, ApiScope.ADMIN, "edit_cron_job", name):
            return await queue.edit_cron_job(name, **changes.changes())

    @server.tool(annotations=CHANGE)
    async def pause_cron_job(
        ctx: Context[Any, Any], name: Annotated[str, Field(description="the schedule's name")]
    ) -> CronJob:
        """Stop a schedule from firing until resumed."""
        async with change(ctx, ApiScope.ADMIN, "pause_cron_job", name):
            return await queue.pause_cron_job(name)

    @server.tool(annotations=CHANGE)
    async def resume_cron_job(
        ctx: Context[Any, Any], name: Annotated[str, Field(description="the schedule's name")]
    ) -> CronJob:
        """Fire a paused schedule again from its next tick."""
        async with change(ctx, ApiScope.ADMIN, "resume_cron_job", name):
            return await queue.resume_cron_job(name)

    @server.tool(annotations=DESTROY)
    async def remove_cron_job(
        ctx: Context[Any, Any], name: Annotated[str, Field(description="the schedule's name")]
    ) -> CronJobs:
        """Delete a schedule (the jobs it made stay). Returns the schedules left."""
        async with change(ctx, ApiScope.ADMIN, "remove_cron_job", name):
            await queue.remove_cron_job(name)
        return CronJobs(cron_jobs=await queue.list_cron_jobs())
