"""The application the acceptance tests run in real worker processes.

AGENTQUEUE_URL names the store (read by `Queue()`), AGENTQUEUE_LEDGER the ledger file. The
payload drives what a handler does: sleep `sleep_ms` (cancellable in `work`, a blocked thread
in `work_sync`), then raise if `fail`, else record `done` and return the worker's pid.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pydantic import BaseModel

from agentqueue import JobContext, Queue
from tests.acceptance import ledger

queue = Queue()


class Task(BaseModel):
    """What one job does."""

    sleep_ms: int = 0
    fail: bool = False


def _log(ctx: JobContext, event: str) -> None:
    ledger.record(os.environ["AGENTQUEUE_LEDGER"], ctx.job_id, ctx.attempt, event)


@queue.handler("work", description="Sleep (cancellable), then succeed or fail.")
async def work(task: Task, ctx: JobContext) -> dict[str, Any]:
    """Record start, sleep, record done."""
    _log(ctx, "start")
    await asyncio.sleep(task.sleep_ms / 1000)
    if task.fail:
        raise RuntimeError("asked to fail")
    _log(ctx, "done")
    return {"pid": os.getpid()}


@queue.handler("work_sync", description="The same in a thread: the sleep cannot be interrupted.")
def work_sync(task: Task, ctx: JobContext) -> dict[str, Any]:
    """Record start, block the thread, record done."""
    _log(ctx, "start")
    time.sleep(task.sleep_ms / 1000)
    if task.fail:
        raise RuntimeError("asked to fail")
    _log(ctx, "done")
    return {"pid": os.getpid()}
