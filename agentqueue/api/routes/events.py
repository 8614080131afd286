"""Server-Sent Events: the store's event feed, live, across processes.

`GET /api/v1/events` streams every job event (filter by job type, queue, tag); `GET
/api/v1/jobs/{id}/stream` follows one job until it ends, sending a `snapshot` (the whole job)
after each of its events. Every job event's SSE id is its feed cursor, so a client that
reconnects with `Last-Event-ID` resumes exactly after the last event it got: no gap, no
duplicate. Pings every 15 s keep proxies from closing idle streams.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse

from agentqueue.api.deps import QueueDep, Reader
from agentqueue.errors import JobNotFound
from agentqueue.models import Job, JobEvent
from agentqueue.queue import Queue
from agentqueue.states import TERMINAL

router = APIRouter(tags=["events"])

PING_SECONDS = 15
_TAG_CACHE = 4096
"""Jobs whose tags a tag-filtered stream remembers (events carry no tags)."""

LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]


def _event(event: JobEvent) -> dict[str, Any]:
    return {"id": event.cursor, "event": event.type.value, "data": event.model_dump_json()}


def _snapshot(job: Job) -> dict[str, Any]:
    return {"event": "snapshot", "data": job.model_dump_json()}


async def _check_cursor(queue: Queue, cursor: str | None) -> None:
    """Refuse a malformed cursor before the stream starts (a 422, not a broken stream)."""
    if cursor is not None:
        await (await queue._store()).read_events(after=cursor, limit=1)  # pyright: ignore[reportPrivateUsage]


@router.get("/events", summary="Stream every job event (SSE)")
async def events(
    queue: QueueDep,
    access: Reader,
    job_type: Annotated[list[str] | None, Query()] = None,
    queue_name: Annotated[list[str] | None, Query(alias="queue")] = None,
    tag: Annotated[list[str] | None, Query()] = None,
    after: str | None = None,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """Job events as they are committed, from any process. `after` (or the `Last-Event-ID`
    header, which wins) resumes after a cursor; without either, the stream starts now."""
    cursor = last_event_id or after
    await _check_cursor(queue, cursor)
    wanted = set(tag or ())
    tags_of: OrderedDict[int, set[str]] = OrderedDict()

    async def tagged(job_id: int) -> set[str]:
        if job_id not in tags_of:
            job = await queue.get_job(job_id)
            tags_of[job_id] = set(job.tags) if job is not None else set()
            if len(tags_of) > _TAG_CACHE:
                tags_of.popitem(last=False)
        return tags_of[job_id]

    async def stream() -> AsyncIterator[dict[str, Any]]:
        async for event in queue.events(after=cursor, job_types=job_type, queues=queue_name):
            if wanted and not wanted & await tagged(event.job_id):
                continue
            yield _event(event)

    return EventSourceResponse(stream(), ping=PING_SECONDS)


@router.get("/jobs/{job_id:int}/stream", tags=["jobs"], summary="Follow one job (SSE)")
async def job_stream(
    job_id: int,
    queue: QueueDep,
    access: Reader,
    last_event_id: LastEventId = None,
) -> EventSourceResponse:
    """A `snapshot` of the job now, then each of its events followed by a new `snapshot`
    (status, progress, output), until it is completed, failed or cancelled."""
    await _check_cursor(queue, last_event_id)
    store = await queue._store()  # pyright: ignore[reportPrivateUsage]
    # The cursor first, then the snapshot: an event committed in between is sent twice at
    # worst (once inside the snapshot, once as an event), never lost.
    cursor = last_event_id or await store.latest_event_cursor()
    first = await queue.get_job(job_id)
    if first is None:
        raise JobNotFound(job_id)

    async def stream() -> AsyncIterator[dict[str, Any]]:
        yield _snapshot(first)
        if first.status in TERMINAL and not await store.read_events(
            after=cursor, limit=1, job_id=job_id
        ):
            return
        async for event in queue.events(after=cursor, from_start=cursor is None, job_id=job_id):
            yield _event(event)
            job = await queue.get_job(job_id)
            if job is None:  # purged
                return
            yield _snapshot(job)
            if job.status in TERMINAL and not await store.read_events(
                after=event.cursor, limit=1, job_id=job_id
            ):
                return

    return EventSourceResponse(stream(), ping=PING_SECONDS)
