"""The dashboard's pages. Each one reads the queue and renders a template; its parts marked
`data-live` are fetched again by `dashboard.js` when the page's SSE stream reports a change."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from agentqueue.api.dashboard.charts import HEIGHT, WIDTH, charts
from agentqueue.api.dashboard.render import page
from agentqueue.api.dashboard.signin import Viewer
from agentqueue.api.deps import QueueDep, ThroughputDep
from agentqueue.errors import AgentQueueError
from agentqueue.models import Job, JobStatus, Token, TokenStatus
from agentqueue.queue import Queue
from agentqueue.states import ACTIVE, TERMINAL

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
CHART_MINUTES = 60
"""The charts' window: the last hour, a bar per minute."""
SHOWN_EVENTS = 200
"""A job's newest events shown on its page (a long job can have thousands of progress ones)."""


@router.get("/")
async def jobs_page(
    request: Request,
    queue: QueueDep,
    reader: ThroughputDep,
    access: Viewer,
    status: str = "",
    job_type: str = "",
    tag: str = "",
    cursor: str = "",
) -> Response:
    """The job list: the charts of the last hour, filters (status, job type, tag), the
    totals, one page of jobs."""
    filters = {"status": status, "job_type": job_type, "tag": tag}
    problem = None
    try:
        found = await queue.list_jobs(
            status=status or None,
            job_type=job_type or None,
            tags=[tag] if tag else None,
            limit=PAGE_SIZE,
            cursor=cursor or None,
        )
        jobs, next_cursor = found.items, found.next_cursor
    except AgentQueueError as error:  # a bad filter or cursor typed into the URL
        problem, jobs, next_cursor = error.message, [], None
    stats = await queue.stats()
    known_types = {info.name for info in await queue.list_job_types()} | set(stats.by_type)
    return page(
        request,
        "jobs.html",
        access,
        jobs=jobs,
        next_url=_query(**filters, cursor=next_cursor) if next_cursor else None,
        first_url=(_query(**filters) or "?") if cursor else None,
        filters=filters,
        statuses=list(JobStatus),
        # The counts are of the chosen job type when there is one (stats know no tags).
        totals=stats.by_type.get(job_type, {}) if job_type else stats.totals,
        totals_of=job_type,
        total_links={
            value.value: _query(status=value.value, job_type=job_type) for value in JobStatus
        },
        all_link=_query(job_type=job_type) or "?",
        job_types=sorted(known_types),
        problem=problem,
        charts=charts(await reader.read(CHART_MINUTES)),
        width=WIDTH,
        height=HEIGHT,
        stream=_events_stream(job_type, tag),
    )


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: int, queue: QueueDep, access: Viewer) -> Response:
    """One job: state, progress, payload, output, errors, tokens, steps and its history."""
    job = await queue.get_job(job_id)
    if job is None:
        return page(
            request, "missing.html", access, status_code=404, what=f"There is no job {job_id}."
        )
    events = await queue.get_job_events(job_id)
    return page(
        request,
        "job.html",
        access,
        job=job,
        terminal=job.status in TERMINAL,
        can_cancel=job.status in ACTIVE and not job.cancel_requested,
        can_retry=job.status in (JobStatus.FAILED, JobStatus.CANCELLED),
        tokens=await _tokens_of(queue, job),
        steps=await queue.get_steps(job_id),
        events=events[-SHOWN_EVENTS:],
        hidden_events=max(0, len(events) - SHOWN_EVENTS),
        stream=f"/api/v1/jobs/{job_id}/stream",
    )


@router.get("/tokens")
async def tokens_page(
    request: Request, queue: QueueDep, access: Viewer, status: str = "pending"
) -> Response:
    """Human-in-the-loop tokens (pending ones by default), each pending one with a form."""
    wanted = [status] if status in set(TokenStatus) else None
    tokens = await queue.list_tokens(status=wanted, limit=200)
    return page(
        request,
        "tokens.html",
        access,
        tokens=tokens,
        status=status if wanted else "all",
        statuses=list(TokenStatus),
        stream="/api/v1/events",
    )


@router.get("/cron")
async def cron_page(request: Request, queue: QueueDep, access: Viewer) -> Response:
    """The cron schedules, with pause and resume."""
    return page(
        request,
        "cron.html",
        access,
        schedules=await queue.list_cron_jobs(),
        stream="/api/v1/events",
    )


@router.get("/workers")
async def workers_page(request: Request, queue: QueueDep, access: Viewer) -> Response:
    """The workers that beat recently, with what they serve and run."""
    return page(
        request,
        "workers.html",
        access,
        workers=await queue.list_workers(alive=True),
        stream="/api/v1/events",
    )


async def _tokens_of(queue: Queue, job: Job) -> list[Token]:
    """The job's tokens, newest first, and the one it waits on even if another job made it."""
    tokens = await queue.list_tokens(job_id=job.id, limit=50)
    if job.waiting_for and all(token.id != job.waiting_for for token in tokens):
        waited = await queue.get_token(job.waiting_for)
        if waited is not None:
            tokens.insert(0, waited)
    return tokens


def _events_stream(job_type: str, tag: str) -> str:
    """The SSE feed a filtered job list listens to (status is no filter of events: a job's
    status is what changes)."""
    return "/api/v1/events" + _query(job_type=job_type, tag=tag)


def _query(**values: str | None) -> str:
    """A query string of the values given (empty ones left out), or nothing."""
    params = urlencode({name: value for name, value in values.items() if value})
    return f"?{params}" if params else ""
