"""Job types of the dashboard's browser tests, run by a real worker process.

Each handler waits at barriers the test controls: files in the directory named by
$AGENTQUEUE_TEST_GATES (`<job id>-<n>` opens barrier n of that job), so a test decides when
each step happens and never sleeps to wait for one.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel, Field

from agentqueue import JobContext, Queue

queue = Queue()
"""The tests' queue; the processes get its store with --url."""

GATE_POLL_SECONDS = 0.02


class Steps(BaseModel):
    """How many gated steps to take."""

    steps: int = Field(default=2, ge=1, le=10)


async def gate(job_id: int, barrier: int | str) -> None:
    """Wait until the test opens barrier `barrier` of job `job_id` (creates its file)."""
    path = Path(os.environ["AGENTQUEUE_TEST_GATES"]) / f"{job_id}-{barrier}"
    # The barrier is a file another process creates: there is no event to await across them.
    while not path.exists():  # noqa: ASYNC110
        await asyncio.sleep(GATE_POLL_SECONDS)


@queue.handler("stepper", description="Takes gated steps, reporting progress after each")
async def stepper(payload: Steps, ctx: JobContext) -> dict[str, int]:
    """Report `step/steps` progress as each barrier opens; cancellable while it waits."""
    for step in range(1, payload.steps + 1):
        await gate(ctx.job_id, step)
        ctx.set_progress(step * 100 // payload.steps, f"step {step} of {payload.steps}")
    return {"steps": payload.steps}


@queue.handler("fragile", description="Fails until its 'fixed' barrier is open", max_attempts=1)
async def fragile(payload: dict[str, object], ctx: JobContext) -> str:
    """Fail (no retries) while barrier 'fixed' is closed, succeed once it is open."""
    path = Path(os.environ["AGENTQUEUE_TEST_GATES"]) / f"{ctx.job_id}-fixed"
    if not path.exists():
        raise RuntimeError("the upstream is down (barrier 'fixed' is closed)")
    return "fixed"


@queue.handler("approval", description="Waits for a person to complete its token")
async def approval(payload: dict[str, object], ctx: JobContext) -> dict[str, object]:
    """Create a token, park until it is completed, answer with what it was completed with."""
    token = await ctx.create_token(tags=["approval"])
    ctx.set_progress(50, f"waiting for token {token.id}")
    result = await ctx.wait_for_token(token)
    return {"ok": result.ok, "data": result.data}
