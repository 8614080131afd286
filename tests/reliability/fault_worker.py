"""The acceptance tests' worker (`tests.acceptance.run_worker`) plus the reliability handlers.

    python -m tests.reliability.fault_worker --concurrency 4 --lease 2

Adds `block_loop` to the acceptance app: a handler that blocks its worker's event loop (a
`time.sleep` inside `async def`, the classic mistake) on the attempts listed in the payload,
so the test can see what becomes of heartbeats that cannot run.
"""

from __future__ import annotations

import os
import runpy
import time
from typing import Any

from pydantic import BaseModel

from agentqueue import JobContext
from tests.acceptance import ledger
from tests.acceptance.app import queue


class Block(BaseModel):
    """How long to block the loop, and on which attempts (the others return at once)."""

    block_ms: int = 0
    on_attempts: list[int] = [1]


@queue.handler("block_loop", description="Block the event loop, then record done.")
async def block_loop(task: Block, ctx: JobContext) -> dict[str, Any]:
    """Record start, block the whole event loop on the chosen attempts, record done."""
    path = os.environ["AGENTQUEUE_LEDGER"]
    ledger.record(path, ctx.job_id, ctx.attempt, "start")
    if ctx.attempt in task.on_attempts:
        time.sleep(task.block_ms / 1000)  # noqa: ASYNC251 - blocking the loop is the point
    ledger.record(path, ctx.job_id, ctx.attempt, "done")
    return {"pid": os.getpid()}


if __name__ == "__main__":
    # Run the acceptance runner as the main module: it imports the same app module, so the
    # queue it runs has the handler above too.
    runpy.run_module("tests.acceptance.run_worker", run_name="__main__")
