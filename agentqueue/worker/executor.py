"""Running one claimed job to its outcome: payload check, timeout, errors, cancellation."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import logging
import threading
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, ParamSpec, TypeVar

from agentqueue.backends.base import Lease, Outcome, OutcomeKind
from agentqueue.context import JobCancelled, JobContext, JobSuspended
from agentqueue.errors import LeaseLost, PayloadInvalid
from agentqueue.models import ErrorRecord, FailureReason, Job
from agentqueue.registry import HandlerSpec, check_plain_json, payload_value
from agentqueue.retry import retry_delay
from agentqueue.worker.isolated import ChildFailed, run_in_child

P = ParamSpec("P")
T = TypeVar("T")

MAX_TRACEBACK = 20_000  # characters kept per failed attempt


class StopReason(Enum):
    """Why the worker cancelled a running handler."""

    CANCEL_REQUESTED = "cancel_requested"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"


class HandlerThreads(Executor):
    """Runs each sync handler in a thread of its own, a daemon thread.

    A thread cannot be interrupted, so a handler the worker has given up on (timed out, released
    at shutdown, lease lost) keeps running until it returns. In a pool sized to the slots it
    would hold a thread the next sync job then queues for, and interpreter exit joins pool
    threads, so one hung handler would keep a stopped worker process alive. Starting a thread
    costs about 0.1 ms per job.
    """

    def __init__(self, name_prefix: str = "agentqueue-handler") -> None:
        self._name_prefix = name_prefix
        self._numbers = itertools.count(1)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Start `fn(*args, **kwargs)` in a new daemon thread; return its future."""
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)

        name = f"{self._name_prefix}-{next(self._numbers)}"
        threading.Thread(target=run, name=name, daemon=True).start()
        return future


@dataclass(slots=True)
class Running:
    """A job this worker is running."""

    job: Job
    ctx: JobContext
    started: float = 0.0
    """Event-loop time the handler started."""
    stop_reason: StopReason | None = None
    task: asyncio.Task[Outcome | Parked | None] | None = field(default=None)

    @property
    def lease(self) -> Lease:
        """The fence for this attempt's writes."""
        return Lease(self.job.id, self.job.attempts)

    def stop(self, reason: StopReason) -> None:
        """Stop the handler: cancel its task and set `ctx.cancelled` (a sync handler's thread
        cannot be interrupted; the flag tells it to stop)."""
        self.stop_reason = reason
        self.ctx._request_cancel()  # pyright: ignore[reportPrivateUsage]
        if self.task is not None and not self.task.done():
            self.task.cancel()


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


class Parked:
    """What `execute` returns for a job its handler parked (`waiting`): already stored."""


PARKED = Parked()


class _TimedOut(Exception):
    """The attempt's deadline passed and no `on_timeout` hook extended it."""


async def execute(
    running: Running,
    spec: HandlerSpec | None,
    threads: Executor,
    now: Callable[[], datetime],
    known_types: Callable[[], list[str]],
) -> Outcome | Parked | None:
    """Run the handler of `running.job`; return its outcome (None: the lease was lost).

    `known_types` lists the job types this worker handles (read only for a job without a
    handler, so the worker passes the function, not a list built for every job).
    """
    job, ctx = running.job, running.ctx
    if spec is None:
        return failure(
            job,
            FailureReason.NO_HANDLER,
            f"no handler for job type {job.job_type!r} in worker {ctx.worker_id} "
            f"(it handles: {', '.join(known_types()) or 'nothing'})",
            now(),
            retryable=False,
        )
    try:
        payload = spec.parse(job.payload)
    except PayloadInvalid as error:
        return failure(job, FailureReason.PAYLOAD_INVALID, error.message, now(), retryable=False)
    try:
        returned = await _run(running, spec, payload, threads)
    except _TimedOut:
        return failure(job, FailureReason.TIMEOUT, f"timed out after {job.timeout:g} s", now())
    except JobSuspended:
        return PARKED
    except LeaseLost:
        return None
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
    except ChildFailed as error:
        return failure(job, FailureReason.HANDLER_ERROR, str(error), now(), trace=error.trace)
    except Exception as error:
        return _handler_failed(job, error, now())
    return _completed(running, returned, now)


def _completed(running: Running, returned: Any, now: Callable[[], datetime]) -> Outcome:
    """The outcome of a handler that returned `returned`: COMPLETE with its output, or a
    failure when the output is not plain JSON data."""
    output = payload_value(running.ctx.output_or(returned))
    if output is None:  # most handlers return nothing: JSON null, nothing to check
        return Outcome(OutcomeKind.COMPLETE, running.lease, output=None)
    try:
        check_plain_json(output)
    except (TypeError, ValueError) as error:
        return failure(
            running.job,
            FailureReason.HANDLER_ERROR,
            f"the handler's output is not plain JSON data: {error}",
            now(),
        )
    return Outcome(OutcomeKind.COMPLETE, running.lease, output=output)


async def _run(running: Running, spec: HandlerSpec, payload: Any, threads: Executor) -> Any:
    """Call the handler under the job's deadline (which `ctx.prolong` / `on_timeout` move)."""
    job, ctx = running.job, running.ctx
    loop = asyncio.get_running_loop()
    args = (payload, ctx) if spec.takes_context else (payload,)

    def start() -> Awaitable[Any]:
        if job.force_kill_on_timeout:
            return run_in_child(spec.fn, payload, job, takes_context=spec.takes_context)
        if spec.is_async:
            return spec.fn(*args)
        # In the job's context (a thread does not inherit it): the handler's log lines name
        # the job, as an async handler's do.
        context = contextvars.copy_context()
        return loop.run_in_executor(threads, functools.partial(context.run, spec.fn, *args))

    if job.timeout is None:
        return await start()
    ctx.deadline = loop.time() + job.timeout
    inner = asyncio.ensure_future(start())
    try:
        while True:
            remaining = ctx.deadline - loop.time()
            if remaining > 0:
                await asyncio.wait({inner}, timeout=remaining)
                if inner.done():
                    return inner.result()
            elif not await _extended(spec, running):
                raise _TimedOut
    finally:
        if not inner.done():
            inner.cancel()
            await asyncio.wait({inner})
        if not inner.cancelled():
            inner.exception()  # retrieved: never "exception was never retrieved" noise


async def _extended(spec: HandlerSpec, running: Running) -> bool:
    """At the deadline: ask the job type's `on_timeout` hook; True if it moved the deadline."""
    ctx = running.ctx
    if spec.on_timeout is None:
        return False
    before = ctx.deadline
    try:
        answer = spec.on_timeout(running.job, ctx)
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception:
        logging.getLogger(__name__).exception(
            "job %s: on_timeout hook raised; the attempt times out", running.job.id
        )
        return False
    if isinstance(answer, int | float) and not isinstance(answer, bool) and answer > 0:
        ctx.prolong(float(answer))
    return ctx.deadline != before


def _handler_failed(job: Job, error: BaseException, at: datetime) -> Outcome:
    """The outcome of a handler that raised `error` (call inside its `except` block)."""
    return failure(
        job,
        FailureReason.HANDLER_ERROR,
        f"{type(error).__name__}: {error}",
        at,
        trace=traceback.format_exc(),
    )
