"""Demo job types and a self-running demo, so a newcomer sees agentqueue work in one command.

agentqueue demo                                  # worker + a stream of demo jobs, live events
agentqueue worker --app agentqueue.demo:queue    # just the worker for these job types
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from pydantic import BaseModel, Field

from agentqueue.context import JobContext
from agentqueue.models import JobEvent
from agentqueue.queue import Queue
from agentqueue.states import ACTIVE

queue = Queue()
"""The demo queue (AGENTQUEUE_URL, else sqlite:///./agentqueue.db)."""


class SummarizePayload(BaseModel):
    """Text to summarize."""

    text: str = Field(min_length=1, description="the text to summarize")
    sentences: int = Field(default=1, ge=1, le=10, description="sentences to keep")


class ThumbnailPayload(BaseModel):
    """An image to shrink."""

    url: str = Field(description="where the image is")
    width: int = Field(default=128, ge=16, le=2048)


@queue.handler(
    "demo.summarize",
    queue="ai",
    description="Summarize a text (pretends to be a slow LLM call, reports progress)",
    examples=[{"text": "Queues make work durable. Agents love them.", "sentences": 1}],
    timeout=30,
)
async def summarize(payload: SummarizePayload, ctx: JobContext) -> dict[str, object]:
    """Keep the first sentences of the text, slowly, reporting progress as it goes."""
    parts = [s.strip() for s in payload.text.split(".") if s.strip()]
    for step in range(1, 5):
        await asyncio.sleep(0.25)
        ctx.set_progress(step * 25, f"thinking ({step}/4)")
    return {"summary": ". ".join(parts[: payload.sentences]) + ".", "sentences": len(parts)}


@queue.handler("demo.thumbnail", description="Make a thumbnail (a sync handler, run in a thread)")
def thumbnail(payload: ThumbnailPayload) -> dict[str, object]:
    """Pretend to resize an image; blocking work is fine in a sync handler."""
    time.sleep(0.2)
    return {"url": payload.url, "width": payload.width, "height": payload.width * 3 // 4}


@queue.handler(
    "demo.flaky",
    description="Fails its first attempt, then succeeds (shows retries with backoff)",
    max_attempts=3,
    retry_delay=1,
)
async def flaky(payload: dict[str, object], ctx: JobContext) -> str:
    """Raise on the first attempt so the retry path is visible."""
    if ctx.attempt == 1:
        raise ConnectionError("upstream not ready yet (this is the demo's planned failure)")
    return f"succeeded on attempt {ctx.attempt}"


@queue.handler(
    "demo.approval",
    description="Waits for a person: creates a token, parks until it is completed (or expires "
    "after an hour), then reports the decision",
    examples=[{"what": "publish the quarterly report"}],
)
async def approval(payload: dict[str, object], ctx: JobContext) -> dict[str, object]:
    """Ask for approval through a token; the job holds no worker slot while it waits."""
    token = await ctx.create_token(timeout=3600, tags=["demo", "approval"])
    ctx.set_progress(50, f"waiting for approval: complete token {token.id}")
    result = await ctx.wait_for_token(token)
    if not result.ok:
        return {"approved": False, "why": "nobody answered within the hour"}
    return {"approved": True, "answer": result.data}


SAMPLE_TEXTS = [
    "Durable queues survive crashes. Workers come and go. The job still runs once.",
    "Agents enqueue work through MCP. Humans approve it. The queue remembers everything.",
    "SQLite needs no server. PostgreSQL scales out. Redis is fast.",
]


async def enqueue_round(round_number: int, *, approval: bool = False) -> None:
    """Enqueue one round of demo jobs (with an approval job when asked)."""
    if approval:
        await queue.add_job(
            "demo.approval", {"what": f"round {round_number}"}, tags=["demo", "approval"]
        )
    await queue.add_jobs(
        [
            {
                "job_type": "demo.summarize",
                "payload": {"text": random.choice(SAMPLE_TEXTS), "sentences": 2},
                "tags": ["demo", f"round-{round_number}"],
            },
            {
                "job_type": "demo.thumbnail",
                "payload": {"url": f"https://example.com/{round_number}.png"},
                "tags": ["demo"],
                "priority": 5,
            },
            {"job_type": "demo.flaky", "payload": {}, "tags": ["demo"]},
        ]
    )


def _describe(event: JobEvent) -> str:
    at = event.at.astimezone().strftime("%H:%M:%S")
    detail = ""
    if event.data.get("progress") is not None:
        detail = f" {event.data['progress']}% {event.data.get('message') or ''}"
    elif event.data.get("error"):
        detail = f" ({event.data['error']})"
    what = f"{event.type.value:<12} -> {event.status.value}"
    return f"{at}  job {event.job_id:<5} {event.job_type:<16} {what}{detail}"


async def run_demo(*, rounds: int | None = None, interval: float = 3.0, show: bool = True) -> None:
    """Run a worker and enqueue a round of demo jobs every `interval` seconds, printing events.

    Stops on Ctrl+C / SIGTERM (in-flight jobs drain), or after `rounds` rounds when given.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    async with queue:
        worker = queue.worker(queues={"ai": 2, "default": 5}, shutdown_timeout=5)
        worker_task = asyncio.create_task(worker.run())
        # Start the event cursor before the first enqueue so no event is missed.
        printer = asyncio.create_task(
            _print_events(show, await queue.backend.latest_event_cursor())
        )
        try:
            number = 0
            while not worker_task.done() and (rounds is None or number < rounds):
                number += 1
                await enqueue_round(number)
                await asyncio.wait({worker_task}, timeout=interval)
            if rounds is not None and not worker_task.done():
                await _wait_idle()
                worker.request_stop()
            await worker_task
        finally:
            printer.cancel()
            await asyncio.gather(printer, return_exceptions=True)


async def _wait_idle(limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        totals = (await queue.stats()).totals
        if sum(totals[status] for status in ACTIVE) == 0:
            return
        await asyncio.sleep(0.2)


async def _print_events(show: bool, after: str | None) -> None:
    if show:
        print(f"agentqueue demo on {queue.url} (Ctrl+C to stop)", flush=True)  # noqa: T201
    async for event in queue.events(after=after, from_start=after is None):
        if show:
            print(_describe(event), flush=True)  # noqa: T201
