"""The supervisor: the maintenance every deployment needs, safe to run in many processes at once.

Each pass rescues expired leases (the attempt counts; the last one fails the job), resumes
waiting jobs whose time came, expires tokens past their timeout (their jobs resume and see
`ok=False`), fires due cron ticks (once each, see `cron.py`), and, less often, deletes
finished jobs and old events past the retention. Every step is a conditional write in the
store, so two supervisors never do one thing twice. It runs
inside every `agentqueue worker`, alone as `agentqueue supervisor`, or one pass at a time
(`Queue.maintain()`, `agentqueue supervisor --once`) from cron or a serverless function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from agentqueue import config
from agentqueue.backends.base import RefreshesStatistics
from agentqueue.errors import AgentQueueError, InvalidArgument
from agentqueue.models import MaintenanceReport

if TYPE_CHECKING:
    from agentqueue.queue import Queue

logger = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 60.0
"""Retention deletes run at most this often (they scan more than the other steps)."""


def _days(
    value: float | timedelta | None, env: str, default: float = config.DEFAULT_RETENTION_DAYS
) -> timedelta | None:
    """Return a retention as a timedelta, None meaning "keep forever" (0 days)."""
    if value is None:
        value = config.env_float(env, default, allow_zero=True)
    span = value if isinstance(value, timedelta) else timedelta(days=value)
    if span < timedelta(0):
        raise InvalidArgument(f"a retention cannot be negative, not {value!r}")
    return span or None


class Supervisor:
    """Runs maintenance passes over a queue's store.

    Args:
        queue: the queue whose store to maintain.
        interval: seconds between passes in `run()`.
        keep_finished: how long completed, failed and cancelled jobs are kept (days as a
            number, or a timedelta; 0 keeps them forever). Default AGENTQUEUE_KEEP_FINISHED_DAYS
            or 7 days.
        keep_events: how long job events are kept (same form). Default
            AGENTQUEUE_KEEP_EVENTS_DAYS or 7 days.
        keep_audit: how long audit records are kept (same form). Default
            AGENTQUEUE_KEEP_AUDIT_DAYS or 90 days.
        batch: most rows one step changes per pass (a backlog drains over several passes).
    """

    def __init__(
        self,
        queue: Queue,
        *,
        interval: float | None = None,
        keep_finished: float | timedelta | None = None,
        keep_events: float | timedelta | None = None,
        keep_audit: float | timedelta | None = None,
        batch: int = 1000,
    ) -> None:
        self.queue = queue
        self.interval = interval or config.env_float(
            "AGENTQUEUE_MAINTENANCE_INTERVAL", config.DEFAULT_MAINTENANCE_INTERVAL
        )
        self.keep_finished = _days(keep_finished, "AGENTQUEUE_KEEP_FINISHED_DAYS")
        self.keep_events = _days(keep_events, "AGENTQUEUE_KEEP_EVENTS_DAYS")
        self.keep_audit = _days(
            keep_audit, "AGENTQUEUE_KEEP_AUDIT_DAYS", config.AUDIT_RETENTION_DAYS
        )
        if batch < 1:
            raise InvalidArgument(f"batch must be at least 1, not {batch}")
        self.batch = batch
        self._purged_at = -PURGE_EVERY_SECONDS

    async def run_once(self, *, purge: bool = True) -> MaintenanceReport:
        """Do one pass now and return what it did (`purge=False` skips retention deletes)."""
        await self.queue.open()
        store = self.queue.backend
        now = self.queue.now()
        report = MaintenanceReport(
            rescued=await store.rescue_expired(now=now),
            resumed=await store.resume_due(now=now, limit=self.batch),
            expired_tokens=await store.expire_tokens(now=now, limit=self.batch),
            cron_fired=await self.queue._cron.fire_due(  # pyright: ignore[reportPrivateUsage]
                limit=self.batch
            ),
        )
        if isinstance(store, RefreshesStatistics):
            report.analyzed = await store.refresh_statistics()
        if purge and (self.keep_finished or self.keep_events):
            current = now or datetime.now(UTC)
            result = await store.purge(
                finished_before=current - self.keep_finished if self.keep_finished else None,
                events_before=current - self.keep_events if self.keep_events else None,
                limit=self.batch,
            )
            report.deleted_jobs, report.deleted_events = result.jobs, result.events
        if purge:
            current = now or datetime.now(UTC)
            if self.keep_audit:
                report.deleted_audit = await store.purge_audit(
                    before=current - self.keep_audit, limit=self.batch
                )
            report.forgotten_workers = await store.forget_workers(
                seen_before=current - timedelta(seconds=config.WORKER_FORGET_SECONDS)
            )
        return report

    async def run(self, stop: asyncio.Event) -> None:
        """Pass every `interval` seconds until `stop` is set; a failed pass is logged, not fatal."""
        while not stop.is_set():
            purge = time.monotonic() - self._purged_at >= PURGE_EVERY_SECONDS
            try:
                report = await self.run_once(purge=purge)
            except AgentQueueError as error:
                logger.warning("maintenance pass failed, retrying: %s", error)
            except Exception:  # the loop must outlive any one failure, or leases never expire
                logger.exception("maintenance pass failed unexpectedly; retrying")
            else:
                if purge:
                    self._purged_at = time.monotonic()
                if report.changed:
                    logger.info("maintenance: %s", _summary(report))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await stop.wait()


def _summary(report: MaintenanceReport) -> str:
    parts = [
        f"rescued {len(report.rescued)}" if report.rescued else "",
        f"resumed {len(report.resumed)}" if report.resumed else "",
        f"expired {len(report.expired_tokens)} token(s)" if report.expired_tokens else "",
        f"fired {len(report.cron_fired)} cron job(s)" if report.cron_fired else "",
        f"deleted {report.deleted_jobs} finished job(s)" if report.deleted_jobs else "",
        f"deleted {report.deleted_events} event(s)" if report.deleted_events else "",
        f"deleted {report.deleted_audit} audit record(s)" if report.deleted_audit else "",
        f"forgot {report.forgotten_workers} worker(s)" if report.forgotten_workers else "",
        f"analyzed {', '.join(report.analyzed)}" if report.analyzed else "",
    ]
    return ", ".join(part for part in parts if part)
