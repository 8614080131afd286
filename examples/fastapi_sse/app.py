"""A FastAPI app that enqueues a job and streams its progress to the browser over SSE.

    uvicorn app:app --port 8000
    curl -X POST localhost:8000/reports -H 'content-type: application/json' -d '{"title": "Q3"}'
    curl -N localhost:8000/reports/1/events

The job runs in a worker inside the same process (started with the app); in production run
`agentqueue worker --app app:queue` processes instead and the stream works the same: it reads
the store's event feed, which carries events from every process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from agentqueue import TERMINAL, JobContext, Queue

queue = Queue()  # $AGENTQUEUE_URL, else sqlite:///./agentqueue.db


class Report(BaseModel):
    """What to render."""

    title: str
    pages: int = Field(default=5, ge=1, le=50)
    seconds_per_page: float = Field(default=0.5, ge=0, le=10)


@queue.handler("render_report", description="Render a report page by page")
async def render_report(report: Report, ctx: JobContext) -> dict[str, object]:
    """Pretend to render each page, reporting progress as it goes."""
    for page in range(1, report.pages + 1):
        await asyncio.sleep(report.seconds_per_page)
        ctx.set_progress(page * 100 // report.pages, f"page {page}/{report.pages}")
    return {"title": report.title, "pages": report.pages}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the queue and run a worker next to the app; drain it on shutdown."""
    async with queue:
        worker = queue.worker(concurrency=4, handle_signals=False)
        running = asyncio.create_task(worker.run())
        yield
        worker.request_stop()
        await running


app = FastAPI(title="reports", lifespan=lifespan)


@app.post("/reports", status_code=201)
async def create_report(report: Report) -> dict[str, object]:
    """Enqueue a report; the answer says where to follow it."""
    job_id = await queue.add_job("render_report", report)
    return {"id": job_id, "events": f"/reports/{job_id}/events"}


@app.get("/reports/{job_id}/events")
async def report_events(job_id: int) -> EventSourceResponse:
    """Stream the job's progress as SSE: `progress` events, then `completed` or `failed`."""
    if await queue.get_job(job_id) is None:
        raise HTTPException(404, f"no report {job_id}")

    async def stream() -> AsyncIterator[dict[str, str]]:
        # from_start: the events already stored first, then new ones as they are committed.
        async for event in queue.events(job_id=job_id, from_start=True):
            if event.type == "progress":
                yield {"event": "progress", "data": event.model_dump_json(include={"data"})}
            if event.status in TERMINAL:
                job = await queue.get_job(job_id)
                assert job is not None
                yield {"event": job.status.value, "data": job.model_dump_json(include={"output"})}
                return

    return EventSourceResponse(stream())
