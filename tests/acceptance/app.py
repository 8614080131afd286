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


class Flow(BaseModel):
    """A durable workflow: step one, a sleep, a slow step two, a token, step three."""

    wait_seconds: float = 1.0
    step_two_ms: int = 1500


async def _effect(ctx: JobContext, name: str, before_ms: int = 0) -> str:
    """A step's side effect, logged once it happened (`started:` first, then `effect:`)."""
    _log(ctx, f"started:{name}")
    await asyncio.sleep(before_ms / 1000)
    _log(ctx, f"effect:{name}")
    return name


@queue.handler("workflow", description="Three steps around a durable sleep and a token wait.")
async def workflow(flow: Flow, ctx: JobContext) -> dict[str, Any]:
    """Each step's effect must show up in the ledger exactly once, whatever gets killed."""
    one = await ctx.step("one", lambda: _effect(ctx, "one"))
    await ctx.wait_for(flow.wait_seconds)
    two = await ctx.step("two", lambda: _effect(ctx, "two", flow.step_two_ms))
    token = await ctx.create_token(timeout=120)
    await ctx.step("announce", lambda: _log(ctx, f"token:{token.id}"))
    answer = await ctx.wait_for_token(token)
    three = await ctx.step("three", lambda: _effect(ctx, "three"))
    return {"steps": [one, two, three], "answer": answer.data}


class Steps(BaseModel):
    """How many progress steps to report, and how long each takes."""

    steps: int = 4
    step_ms: int = 50


@queue.handler("progress", description="Report progress in steps, then return the step count.")
async def progress(task: Steps, ctx: JobContext) -> dict[str, Any]:
    """Each step sets progress (a `progress` event another process can follow live)."""
    for step in range(1, task.steps + 1):
        await asyncio.sleep(task.step_ms / 1000)
        ctx.set_progress(step * 100 // task.steps, f"step {step} of {task.steps}")
    return {"steps": task.steps}
