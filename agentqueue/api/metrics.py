"""`/metrics` in Prometheus' text format, the same on every store.

Gauges are read from the store at each scrape: jobs by type and status, the age of the oldest
due pending job, live workers and the jobs they run. Counters and histograms come from the
store's event feed, which the app follows from its start (any worker's jobs count, in any
process): jobs enqueued, completed, failed, retried and cancelled by type; run time (claim to
outcome) and wait time (due to claimed, from the claim event's `waited`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agentqueue.errors import AgentQueueError
from agentqueue.models import EventType, JobEvent, JobStatus
from agentqueue.queue import Queue

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_OUTCOME_COUNTERS = {
    EventType.ADDED: "enqueued",
    EventType.COMPLETE: "completed",
    EventType.FAIL: "failed",
    EventType.RETRY_LATER: "retried",
    EventType.CANCEL: "cancelled",
}
_ATTEMPT_ENDS = frozenset(
    {EventType.COMPLETE, EventType.FAIL, EventType.RETRY_LATER, EventType.RELEASE}
)
_CLAIMS_REMEMBERED = 100_000
"""Claimed jobs whose claim time the follower keeps (to time their run)."""
FEED_PACE = 0.1
"""Seconds the follower waits after a wake-up before reading the feed: scrapes come seconds
apart, and under load one read then counts the events of many commits (reading after every
commit cost a busy API about a tenth of its CPU)."""


class Metrics:
    """One app's metrics: a registry, the gauges read at scrape, the feed follower."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Gauge(
            "agentqueue_jobs",
            "Jobs in the store by type and status.",
            ["job_type", "status"],
            registry=r,
        )
        self.oldest_pending = Gauge(
            "agentqueue_oldest_pending_seconds",
            "Seconds since the oldest due pending job was added (0 when none is due).",
            registry=r,
        )
        self.workers = Gauge("agentqueue_workers_alive", "Live worker processes.", registry=r)
        self.worker_running = Gauge(
            "agentqueue_worker_running_jobs",
            "Jobs the live workers run (their last beat).",
            registry=r,
        )
        self.worker_slots = Gauge(
            "agentqueue_worker_slots", "Concurrency of the live workers.", registry=r
        )
        self.counters = {
            name: Counter(
                f"agentqueue_jobs_{name}",
                f"Jobs {name} (since this server started).",
                ["job_type"],
                registry=r,
            )
            for name in _OUTCOME_COUNTERS.values()
        }
        self.run_time = Histogram(
            "agentqueue_job_run_seconds",
            "Attempt run time, claim to outcome.",
            ["job_type"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.wait_time = Histogram(
            "agentqueue_job_wait_seconds",
            "Time from due to claimed.",
            ["job_type"],
            buckets=_BUCKETS,
            registry=r,
        )
        self._claimed_at: dict[int, datetime] = {}
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        """Set once the follower reads the feed (events from then on are counted)."""

    # -- the feed ----------------------------------------------------------------------------
    def start(self) -> None:
        """Follow the event feed in the background."""
        self._task = asyncio.create_task(self._follow(), name="agentqueue-metrics")

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            try:
                store = await self.queue._store()  # pyright: ignore[reportPrivateUsage]
                cursor = await store.latest_event_cursor()
                self.ready.set()
                feed = self.queue.events(after=cursor, from_start=cursor is None, pace=FEED_PACE)
                async for event in feed:
                    self.count(event)
            except AgentQueueError as error:
                logger.warning("metrics lost the event feed, retrying: %s", error)
                await asyncio.sleep(1.0)

    def count(self, event: JobEvent) -> None:
        """Update the counters and histograms with one event."""
        name = _OUTCOME_COUNTERS.get(event.type)
        if name is not None:
            self.counters[name].labels(event.job_type).inc()
        if event.type is EventType.CLAIM:
            waited = event.data.get("waited")
            if isinstance(waited, int | float):
                self.wait_time.labels(event.job_type).observe(float(waited))
            self._claimed_at[event.job_id] = event.at
            if len(self._claimed_at) > _CLAIMS_REMEMBERED:
                self._claimed_at.pop(next(iter(self._claimed_at)))
        elif event.type in _ATTEMPT_ENDS:
            started = self._claimed_at.pop(event.job_id, None)
            if started is not None:
                seconds = max((event.at - started).total_seconds(), 0.0)
                self.run_time.labels(event.job_type).observe(seconds)

    # -- scrape ------------------------------------------------------------------------------
    async def render(self) -> bytes:
        """Read the gauges from the store and return the whole registry as text."""
        stats = await self.queue.stats()
        self.jobs.clear()
        for job_type, counts in stats.by_type.items():
            for status, count in counts.items():
                self.jobs.labels(job_type, status.value).set(count)
        now = self.queue.clock.now()
        page = await self.queue.list_jobs(
            status=JobStatus.PENDING, run_at_before=now, order="oldest", limit=1
        )
        oldest = page.items[0].created_at if page.items else None
        self.oldest_pending.set(max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
        workers = await self.queue.list_workers()
        self.workers.set(len(workers))
        self.worker_running.set(sum(w.running for w in workers))
        self.worker_slots.set(sum(w.concurrency for w in workers))
        return generate_latest(self.registry)
