"""Cron schedules: the core side (validation, next ticks, firing) over the store's cron table.

A schedule is stored with its next tick (`next_run_at`). Every supervisor pass (each worker runs
one per second) asks the store for due schedules and fires each tick with `fire_cron`, a
conditional write on (schedule, tick): however many schedulers race, one wins, and the job's
idempotency key `cron:<name>:<tick>` makes even a replayed tick enqueue one job.

Missed ticks (all schedulers down): on recovery the schedule fires ONCE, for the oldest missed
tick, and its next tick is the first one after now — never a burst of catch-up jobs, never
"skip until next time". Overlap: with `allow_overlap=False` (the default) a tick whose previous
job is still pending, processing or waiting is consumed without a job.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agentqueue.errors import AgentQueueError, CronJobNotFound, InvalidArgument
from agentqueue.models import CRON_NAME_PATTERN, CronJob, CronStatus, JobOptions, NewJob
from agentqueue.schedule import CronExpression

if TYPE_CHECKING:
    from agentqueue.backends.base import Backend
    from agentqueue.queue import Queue

logger = logging.getLogger(__name__)

_NAME = re.compile(CRON_NAME_PATTERN)


@dataclass(slots=True)
class CodeSchedule:
    """A schedule declared with `@queue.cron(...)`, upserted when a worker starts."""

    name: str
    expression: str
    job_type: str
    payload: Any = None
    timezone: str = "UTC"
    allow_overlap: bool = False
    options: dict[str, Any] = field(default_factory=dict[str, Any])


def check_name(name: str) -> str:
    """Return a valid schedule name or raise InvalidArgument."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"bad schedule name {name!r}: 1-200 characters of letters, digits, _ . : -"
        )
    return name


def options_from(values: dict[str, Any]) -> JobOptions:
    """Return job options for a schedule, refusing run_at/delay/idempotency_key (set per tick)."""
    for fixed in ("run_at", "delay", "idempotency_key"):
        if values.get(fixed) is not None:
            raise InvalidArgument(f"a cron schedule sets {fixed} itself for each tick")
    try:
        return JobOptions(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as error:
        from agentqueue.queue import invalid_from  # the queue module imports this one

        raise invalid_from(error, "cron job options") from None


class CronManager:
    """`Queue`'s cron operations (the Queue methods delegate here)."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.declared: dict[str, CodeSchedule] = {}

    async def put(
        self,
        name: str,
        expression: str,
        job_type: str,
        payload: Any,
        *,
        timezone: str,
        allow_overlap: bool,
        dead_letter_job_type: str | None,
        options: JobOptions,
        status: CronStatus = CronStatus.ACTIVE,
    ) -> CronJob:
        """Validate everything, compute the next tick, store (insert or replace)."""
        check_name(name)
        expr = CronExpression(expression, timezone)
        # The same checks as add_job (type name, payload against the handler or the stored
        # schema, options), so a schedule can never enqueue a job add_job would refuse.
        body = payload if payload is not None else {}
        try:
            job = NewJob(job_type=job_type, payload=body, **_set(options))
        except ValidationError as error:
            from agentqueue.queue import invalid_from  # the queue module imports this one

            raise invalid_from(error, "cron job") from None
        await self.queue.resolver.resolve(job)
        backend = await self._backend()
        existing = await backend.get_cron_job(name)
        now = await self._now()
        return await backend.put_cron_job(
            CronJob(
                name=name,
                expression=expr.expression,
                timezone=timezone,
                job_type=job_type,
                payload=payload if payload is not None else {},
                options=options,
                allow_overlap=allow_overlap,
                dead_letter_job_type=dead_letter_job_type,
                status=status,
                next_run_at=_next_run(existing, expr, timezone, status, now),
                last_run_at=existing.last_run_at if existing else None,
                last_job_id=existing.last_job_id if existing else None,
                created_at=existing.created_at if existing else None,
            ),
            now=self.queue.now(),
        )

    async def _backend(self) -> Backend:
        await self.queue.open()
        return self.queue.backend

    async def _now(self) -> datetime:
        """The time next ticks are computed from: the injected clock's, else the store's own
        (the clock `due_cron_jobs` and `fire_cron` decide by). A process whose wall clock is
        off must neither skip ticks (ahead) nor fire ones already past (behind)."""
        injected = self.queue.now()
        return injected if injected is not None else await (await self._backend()).store_now()

    async def require(self, name: str) -> CronJob:
        """Return the schedule or raise CronJobNotFound."""
        cron = await (await self._backend()).get_cron_job(name)
        if cron is None:
            raise CronJobNotFound(name)
        return cron

    async def set_status(self, name: str, status: CronStatus) -> CronJob:
        """Pause (no next tick) or resume (next tick after now) a schedule."""
        cron = await self.require(name)
        if cron.status is status:
            return cron
        next_run = (
            CronExpression(cron.expression, cron.timezone).next_after(await self._now())
            if status is CronStatus.ACTIVE
            else None
        )
        return await (await self._backend()).put_cron_job(
            cron.model_copy(update={"status": status, "next_run_at": next_run}),
            now=self.queue.now(),
        )

    async def fire_due(self, limit: int = 100) -> list[int]:
        """Fire every due tick once (the supervisor's step); return the jobs enqueued."""
        store = self.queue.backend
        fired: list[int] = []
        due = await store.due_cron_jobs(now=self.queue.now(), limit=limit)
        # The next tick is the first after the store's time, read once a pass when something
        # is due: this process's clock may be off (ahead, it would skip ticks).
        now = await self._now() if due else None
        for cron in due:
            tick = cron.next_run_at
            if tick is None:
                continue
            try:
                expr = CronExpression(cron.expression, cron.timezone)
                job = await self.queue.resolver.resolve(
                    NewJob(
                        job_type=cron.job_type,
                        payload=cron.payload,
                        idempotency_key=f"cron:{cron.name}:{tick.isoformat()}",
                        dead_letter_job_type=cron.dead_letter_job_type,
                        **_set(cron.options),
                    )
                )
            except AgentQueueError as error:
                # A schedule that can no longer enqueue (its handler's payload changed, say)
                # must not block the others; it is retried at the next pass.
                logger.error("cron %s: tick %s not fired: %s", cron.name, tick, error)
                continue
            assert now is not None
            result = await store.fire_cron(
                name=cron.name,
                tick=tick,
                next_run_at=expr.next_after(max(now, tick)),
                job=job,
                now=self.queue.now(),
            )
            if result.job_id is not None:
                fired.append(result.job_id)
            elif result.skipped_overlap:
                logger.info(
                    "cron %s: tick %s skipped, the previous job still runs", cron.name, tick
                )
        return fired

    async def upsert_declared(self) -> None:
        """Store the schedules declared in code (a worker calls this when it starts)."""
        for declared in self.declared.values():
            existing = await self.queue.backend.get_cron_job(declared.name)
            await self.put(
                declared.name,
                declared.expression,
                declared.job_type,
                declared.payload,
                timezone=declared.timezone,
                allow_overlap=declared.allow_overlap,
                dead_letter_job_type=declared.options.get("dead_letter_job_type"),
                options=options_from(
                    {k: v for k, v in declared.options.items() if k != "dead_letter_job_type"}
                ),
                # A schedule paused by an operator stays paused across deploys.
                status=existing.status if existing else CronStatus.ACTIVE,
            )


def _next_run(
    existing: CronJob | None,
    expr: CronExpression,
    timezone: str,
    status: CronStatus,
    now: datetime,
) -> datetime | None:
    """The next tick of a stored schedule: kept when its timing did not change, so replacing
    a schedule (a worker start re-declaring it, a re-run add) never drops a tick that is due
    but not fired yet; else the first tick after now."""
    if status is not CronStatus.ACTIVE:
        return None
    if (
        existing is not None
        and existing.status is CronStatus.ACTIVE
        and existing.next_run_at is not None
        and (existing.expression, existing.timezone) == (expr.expression, timezone)
    ):
        return existing.next_run_at
    return expr.next_after(now)


def _set(options: JobOptions) -> dict[str, Any]:
    """The options given explicitly (so handler defaults still apply to the rest)."""
    return {name: getattr(options, name) for name in options.model_fields_set}
