"""Run a handler in a child process that can be killed: `force_kill_on_timeout`.

A thread cannot be stopped and an event loop blocked by CPU-bound code cannot cancel anything,
so for such handlers the only reliable deadline is a process kill. Each job gets a fresh child
from a fork server (`forkserver` on POSIX: forked from a clean server process, not from the
worker with its threads and event loop; `spawn` elsewhere). The handler is pickled by reference,
so it must be a top-level function of an importable module; the payload must pickle and the
result must be JSON data. The child gets a `ChildContext` (job facts, a logger), not a
`JobContext`: steps, waits, tokens, progress and output need the worker's store connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import multiprocessing
import pickle
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from agentqueue.models import Job

logger = logging.getLogger(__name__)


class ChildFailed(Exception):
    """The handler raised in the child process (or the child died); carries its traceback."""

    def __init__(self, message: str, trace: str | None = None) -> None:
        super().__init__(message)
        self.trace = trace


class ChildContext:
    """What a handler running in a killable child process gets as its `ctx`."""

    def __init__(self, job: Job) -> None:
        self.job = job
        """The job as claimed."""
        self.logger = logging.LoggerAdapter(
            logging.getLogger("agentqueue.job"),
            {"job_id": job.id, "job_type": job.job_type, "attempt": job.attempts},
        )
        """A logger whose records carry job_id, job_type and attempt."""

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
        """Always False: a cancel request kills the child process instead."""
        return False


def _context() -> Any:  # typeshed types the concrete contexts only
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _child_main(
    fn: Callable[..., Any], payload: Any, job: Job, takes_context: bool, conn: Connection
) -> None:
    """Child process entry point: run the handler, send back ("ok", json) or ("error", …)."""
    try:
        args = (payload, ChildContext(job)) if takes_context else (payload,)
        result = fn(*args)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        conn.send(("ok", json.dumps(result, allow_nan=False)))
    except BaseException as error:  # the parent must hear about every way the child ends
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(error).__name__}: {error}", traceback.format_exc()))
    finally:
        conn.close()


async def _await(awaitable: Any) -> Any:
    return await awaitable


async def run_in_child(
    fn: Callable[..., Any], payload: Any, job: Job, *, takes_context: bool
) -> Any:
    """Run `fn(payload[, ctx])` in a child process and return its JSON result.

    Cancelling the awaiting task (the deadline, a cancel request, shutdown) kills the child
    at once with SIGKILL.

    Raises:
        ChildFailed: the handler raised, its result was not JSON data, or the child died.
    """
    try:
        pickle.dumps(fn)
    except Exception as error:
        raise ChildFailed(
            "force_kill_on_timeout runs the handler in a child process, so it must be a "
            f"top-level function of an importable module (pickling it failed: {error})"
        ) from None
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child_main,
        args=(fn, payload, job, takes_context, sender),
        name=f"agentqueue-job-{job.id}",
        daemon=True,
    )
    loop = asyncio.get_running_loop()
    try:
        # Started on the loop (a few ms with a fork server): a start in a thread could finish
        # after a cancellation and leave a child nobody kills.
        process.start()
        sender.close()
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(receiver.fileno(), ready)
        try:
            await readable
        finally:
            loop.remove_reader(receiver.fileno())
        try:
            message = receiver.recv()
        except EOFError:
            await loop.run_in_executor(None, process.join, 5)
            raise ChildFailed(
                f"the child process died without a result (exit code {process.exitcode})"
            ) from None
    finally:
        if process.is_alive():
            process.kill()
        receiver.close()
        if process.pid is not None:
            # Reap it off the loop; a killed process exits at once.
            loop.run_in_executor(None, process.join, 5)
    if message[0] == "ok":
        return json.loads(message[1])
    raise ChildFailed(message[1], message[2])
