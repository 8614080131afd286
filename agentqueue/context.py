"""`JobContext`: what a running handler can see and do."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from agentqueue.errors import AgentQueueError, InvalidArgument
from agentqueue.models import Job


class JobCancelled(AgentQueueError):
    """Raised inside a handler (by `raise_if_cancelled`) when the job's cancel was requested."""

    code = "job_cancelled"


_UNSET: Any = object()


class JobContext:
    """Passed as the second argument of a handler that takes one.

    Methods are safe to call from async handlers and from sync handlers running in a thread.
    """

    def __init__(
        self,
        job: Job,
        *,
        worker_id: str,
        loop: asyncio.AbstractEventLoop,
        report_progress: Callable[[int, str | None], None],
    ) -> None:
        self.job = job
        """The job as claimed (status processing, attempts already counting this attempt)."""
        self.worker_id = worker_id
        self.logger = logging.LoggerAdapter(
            logging.getLogger("agentqueue.job"),
            {"job_id": job.id, "job_type": job.job_type, "attempt": job.attempts},
        )
        """A logger whose records carry job_id, job_type and attempt."""
        self._loop = loop
        self._report_progress = report_progress
        self._cancelled = threading.Event()
        self._output: Any = _UNSET

    @property
    def job_id(self) -> int:
        """The job's id."""
        return self.job.id

    @property
    def attempt(self) -> int:
        """This attempt's number, starting at 1."""
        return self.job.attempts

    @property
    def cancelled(self) -> bool:
        """True once an operator asked to cancel this job; the handler should stop."""
        return self._cancelled.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise `JobCancelled` if cancellation was requested (for sync handlers' loops)."""
        if self._cancelled.is_set():
            raise JobCancelled(f"job {self.job.id} was cancelled")

    def set_progress(self, progress: int, message: str | None = None) -> None:
        """Record progress (0-100) and an optional message; persisted and emitted as an event.

        Calls are coalesced: a burst of updates writes the latest one, never an older one last.

        Raises:
            InvalidArgument: progress is not a whole number from 0 to 100.
        """
        if isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100:
            raise InvalidArgument(
                f"progress must be a whole number from 0 to 100, not {progress!r}"
            )
        if _on_loop(self._loop):
            self._report_progress(progress, message)
        else:
            self._loop.call_soon_threadsafe(self._report_progress, progress, message)

    def set_output(self, data: Any) -> None:
        """Set the job's output; it wins over the handler's return value."""
        self._output = data

    def output_or(self, returned: Any) -> Any:
        """Return the output set with `set_output`, else `returned`."""
        return returned if self._output is _UNSET else self._output

    def _request_cancel(self) -> None:
        self._cancelled.set()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
