"""Cron across real scheduler processes: three `agentqueue supervisor` processes on one
schedule fire each tick exactly once, across a kill and restart of all of them.

A six-field schedule ticks every second, so the test runs in seconds on the real clock.
"""

from __future__ import annotations

import sys
from datetime import datetime

import pytest

from agentqueue import Queue
from tests.acceptance.procs import Env, Worker, all_jobs, until

pytestmark = pytest.mark.slow

SUPERVISOR = [sys.executable, "-m", "agentqueue", "supervisor", "--interval", "0.05"]


def tick_of(key: str | None) -> datetime:
    """The tick a cron job was fired for, from its idempotency key `cron:<name>:<tick>`."""
    assert key is not None
    assert key.startswith("cron:every-second:")
    return datetime.fromisoformat(key.removeprefix("cron:every-second:"))


async def fired(queue: Queue) -> list[datetime]:
    """The ticks of every job the schedule enqueued, in enqueue order."""
    return [tick_of(job.idempotency_key) for job in await all_jobs(queue)]


def start_schedulers(env: Env) -> list[Worker]:
    """Start three supervisor processes (each fires due ticks every 50 ms)."""
    return [env.start(command=SUPERVISOR) for _ in range(3)]


async def test_three_scheduler_processes_fire_each_tick_once_across_a_restart(
    env: Env, queue: Queue
) -> None:
    await queue.add_cron_job("every-second", "* * * * * *", "report", allow_overlap=True)
    first = start_schedulers(env)
    before = await until(
        "ticks fired by the first schedulers",
        lambda: _at_least(queue, 3),
        timeout=30,
        workers=first,
    )
    for process in first:
        process.process.kill()
        process.wait_exit(10)
    second = start_schedulers(env)
    await until(
        "ticks fired after the restart",
        lambda: _at_least(queue, len(before) + 3),
        timeout=30,
        workers=second,
    )
    for process in second:
        process.process.kill()
        process.wait_exit(10)
    ticks = await fired(queue)
    assert len(ticks) == len(set(ticks)), f"a tick fired twice: {ticks}"
    assert ticks == sorted(ticks)
    # Every tick fired is a whole second and fired once. Ticks missed while no scheduler ran
    # (the restart, or a pass delayed past a second on a loaded machine) are merged into one,
    # the documented missed-tick policy: gaps are allowed, duplicates never.
    assert all(tick.microsecond == 0 for tick in ticks)
    assert len(ticks) >= len(before) + 3


async def _at_least(queue: Queue, count: int) -> list[datetime] | None:
    ticks = await fired(queue)
    return ticks if len(ticks) >= count else None
