"""Running one claimed job to its outcome: payload check, timeout, errors, cancellation."""

from __future__ import annotations

import asyncio
import functools
import json
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from agentqueue.backends.base import Lease, Outcome, OutcomeKind
from agentqueue.context import JobCancelled, JobContext
from agentqueue.errors import PayloadInvalid
from agentqueue.models import ErrorRecord, FailureReason, Job
from agentqueue.registry import HandlerSpec, payload_value
from agentqueue.retry import retry_delay

MAX_TRACEBACK = 20_000  # characters kept per failed attempt


class StopReason(Enum):
    """Why the worker cancelled a running handler."""

    CANCEL_REQUESTED = "cancel_requested"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"


@dataclass(slots=True)
class Running:
    """A job this worker is running."""

    job: Job
    ctx: JobContext
    stop_reason: StopReason | None = None
    task: asyncio.Task[Outcome | None] | None = field(default=None)

    @property
    def lease(self) -> Lease:
        """The fence for this attempt's writes."""
        return Lease(self.job.id, self.job.attempts)


def failure(
    job: Job,
    reason: FailureReason,
    message: str,
    at: datetime,
    *,
    trace: str | None = None,
    retryable: bool = True,
) -> Outcome:
    """Return RETRY while attempts remain (and the failure is retryable), else FAIL."""
    error = ErrorRecord(
        attempt=job.attempts,
        at=at,
        reason=reason,
        message=message,
        traceback=trace[-MAX_TRACEBACK:] if trace else None,
    )
    lease = Lease(job.id, job.attempts)
    if retryable and job.attempts < job.max_attempts:
        delay = retry_delay(
            job.attempts,
            delay=job.retry_delay,
            backoff=job.retry_backoff,
            delay_max=job.retry_delay_max,
        )
        return Outcome(OutcomeKind.RETRY, lease, error=error, retry_in=delay)
    return Outcome(OutcomeKind.FAIL, lease, error=error)


async def execute(
    running: Running,
    spec: HandlerSpec | None,
    threads: ThreadPoolExecutor,
    now: Callable[[], datetime],
    known_types: list[str],
) -> Outcome | None:
    """Run the handler of `running.job`; return its outcome (None: the lease was lost)."""
    job, ctx = running.job, running.ctx
    if spec is None:
        return failure(
            job,
            FailureReason.NO_HANDLER,
            f"no handler for job type {job.job_type!r} in worker {ctx.worker_id} "
            f"(it handles: {', '.join(known_types) or 'nothing'})",
            now(),
            retryable=False,
        )
    try:
        payload = spec.parse(job.payload)
    except PayloadInvalid as error:
        return failure(job, FailureReason.PAYLOAD_INVALID, error.message, now(), retryable=False)
    args = (payload, ctx) if spec.takes_context else (payload,)
    try:
        async with asyncio.timeout(job.timeout):
            if spec.is_async:
                returned = await spec.fn(*args)
            else:
                loop = asyncio.get_running_loop()
                returned = await loop.run_in_executor(threads, functools.partial(spec.fn, *args))
    except TimeoutError:
        return failure(job, FailureReason.TIMEOUT, f"timed out after {job.timeout:g} s", now())
    except asyncio.CancelledError:
        if running.stop_reason is StopReason.CANCEL_REQUESTED:
            return Outcome(OutcomeKind.CANCEL, running.lease)
        if running.stop_reason is StopReason.SHUTDOWN:
            return Outcome(OutcomeKind.RELEASE, running.lease)
        if running.stop_reason is StopReason.LEASE_LOST:
            return None
        raise
    except JobCancelled:
        return Outcome(OutcomeKind.CANCEL, running.lease)
    except Exception as error:
        return failure(
            job,
            FailureReason.HANDLER_ERROR,
            f"{type(error).__name__}: {error}",
            now(),
            trace=traceback.format_exc(),
        )
    output = payload_value(ctx.output_or(returned))
    try:
        json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as error:
        return failure(
            job,
            FailureReason.HANDLER_ERROR,
            f"the handler's output is not plain JSON data: {error}",
            now(),
        )
    return Outcome(OutcomeKind.COMPLETE, running.lease, output=output)
