"""Reliability scenario 6: three schedulers, one with its clock 3 s ahead and one 3 s behind, a
kill and a replacement, then every scheduler killed and restarted: each cron tick is enqueued
exactly once, none before its time, and none is skipped while a scheduler lives.

A six-field schedule ticks every second, so the run takes seconds on the real clock. Each
scheduler runs supervisor passes every 50 ms on its own `Queue` whose clock is a skewed
`SystemClock` (the store keeps its own time, as on a machine whose clock drifted; see
`tests.reliability.skewed_scheduler`). In the default run the schedulers are tasks of this
process, each with its own connections, killed by cancellation wherever they are; under `soak`
they are real processes killed with SIGKILL (python start-up on a loaded 2-core machine costs
seconds). `tests/acceptance/test_cron_processes.py` covers process kills without skew.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest

from agentqueue import Job, Queue
from tests.acceptance import conftest as acceptance
from tests.acceptance.procs import Env, Worker, all_jobs, until
from tests.acceptance.test_cron_processes import tick_of
from tests.reliability.figures import record
from tests.reliability.skewed_scheduler import SkewedClock

# The acceptance tests' fixtures: a shared store, a ledger, processes killed at the end.
env = acceptance.env
queue = acceptance.queue

SKEWS = (0.0, 3.0, -3.0)
"""Each scheduler's clock offset, seconds."""

OUTAGE = 2.0
"""How long no scheduler runs (seconds): ticks in it are missed, then merged into one."""

INTERVAL = 0.05
"""Seconds between a scheduler's passes."""

SCHEDULER = [sys.executable, "-m", "tests.reliability.skewed_scheduler"]


class Schedulers:
    """Starts and kills schedulers, as tasks of this process or as processes."""

    def __init__(self, env: Env, processes: bool) -> None:
        self.env = env
        self.processes = processes
        self.tasks: list[tuple[asyncio.Task[None], Queue]] = []

    async def start(self, skews: tuple[float, ...]) -> list[Any]:
        """Start one scheduler per skew; return once each has its queue open."""
        if self.processes:
            workers = [
                self.env.start(command=[*SCHEDULER, str(skew), str(INTERVAL)]) for skew in skews
            ]
            await until(
                "schedulers ready",
                lambda: all("skewed by" in worker.output() for worker in workers),
                timeout=30,
                workers=workers,
            )
            return workers
        started: list[Any] = []
        for skew in skews:
            scheduler = await Queue(self.env.url, clock=SkewedClock(skew)).open()
            passes = scheduler.supervisor(interval=INTERVAL).run(asyncio.Event())
            one = (asyncio.create_task(passes), scheduler)
            self.tasks.append(one)
            started.append(one)
        return started

    async def kill(self, schedulers: list[Any]) -> None:
        """SIGKILL the processes, or cancel the tasks wherever they are and drop their queues."""
        for one in schedulers:
            if isinstance(one, Worker):
                one.process.kill()
                one.wait_exit(10)
                continue
            task, scheduler = one
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await scheduler.close()
            self.tasks.remove(one)

    async def close(self) -> None:
        """Kill the tasks left (the env fixture reaps processes)."""
        await self.kill(list(self.tasks))


async def cron_jobs(queue: Queue) -> list[Job]:
    """Every job the schedule enqueued, in enqueue order."""
    return [job for job in await all_jobs(queue) if job.idempotency_key]


async def more_ticks(queue: Queue, than: int, running: list[Any]) -> list[Job]:
    """Wait (bounded) until at least 3 more ticks than `than` were fired."""

    async def enough() -> list[Job] | None:
        jobs = await cron_jobs(queue)
        return jobs if len(jobs) >= than + 3 else None

    workers = [one for one in running if isinstance(one, Worker)]
    return await until("more ticks fired", enough, timeout=30, workers=workers)


def gaps(ticks: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive fired ticks more than one second apart."""
    return [(a, b) for a, b in itertools.pairwise(ticks) if b - a > timedelta(seconds=1)]


async def kill_and_restart(schedulers: Schedulers, queue: Queue) -> tuple[datetime, datetime]:
    """Three skewed schedulers; kill the true-clock one and add a new one; kill all, wait
    `OUTAGE`, start three again. Return when no scheduler ran (from, until)."""
    # The schedule starts once every scheduler runs: a tick due before that would be missed
    # (and merged) by design, not by a race.
    running = await schedulers.start(SKEWS)
    await queue.add_cron_job("every-second", "* * * * * *", "report", allow_overlap=True)
    jobs = await more_ticks(queue, 0, running)
    await schedulers.kill(running[:1])
    running = [*running[1:], *await schedulers.start((0.0,))]
    jobs = await more_ticks(queue, len(jobs), running)
    await schedulers.kill(running)
    down_from = datetime.now().astimezone()
    await asyncio.sleep(OUTAGE)  # the outage itself, not a wait for a condition
    running = await schedulers.start(SKEWS)
    down_until = datetime.now().astimezone()
    await more_ticks(queue, len(jobs), running)
    await schedulers.kill(running)
    return down_from, down_until


@pytest.mark.parametrize(
    "processes", [False, pytest.param(True, marks=pytest.mark.soak)], ids=["tasks", "processes"]
)
async def test_skewed_killed_and_restarted_schedulers_fire_each_tick_once(
    env: Env, queue: Queue, shared_url: str, processes: bool
) -> None:
    schedulers = Schedulers(env, processes)
    try:
        down_from, down_until = await kill_and_restart(schedulers, queue)
    finally:
        await schedulers.close()
    jobs = await cron_jobs(queue)
    ticks = [tick_of(job.idempotency_key) for job in jobs]
    assert len(ticks) == len(set(ticks)), f"a tick fired twice: {ticks}"
    assert ticks == sorted(ticks)
    assert len(ticks) >= 9
    pairs = list(zip(jobs, ticks, strict=True))
    early = [(job.created_at, tick) for job, tick in pairs if job.created_at < tick]
    assert not early, f"ticks enqueued before their time: {early}"
    # Gaps only where no scheduler ran: the outage (its missed ticks merge into one, fired on
    # recovery) — never because a skewed clock moved a schedule's next tick.
    while_alive = [(a, b) for a, b in gaps(ticks) if not (a <= down_until and b >= down_from)]
    assert not while_alive, (
        f"ticks skipped while schedulers ran: {while_alive} (outage {down_from} - {down_until}; "
        f"ticks {[t.time().isoformat() for t in ticks]})"
    )
    lateness = [(job.created_at - tick).total_seconds() for job, tick in pairs]
    record(
        "6-cron-skewed-schedulers",
        shared_url.split(":", 1)[0],
        schedulers_are="processes" if processes else "tasks",
        schedulers=len(SKEWS),
        skews_s=list(SKEWS),
        ticks=len(ticks),
        duplicates=len(ticks) - len(set(ticks)),
        early=len(early),
        skipped_while_alive=len(while_alive),
        outage_s=OUTAGE,
        max_enqueue_lateness_s=round(max(lateness), 3),
    )


async def test_the_store_clock_is_the_stores(queue: Queue) -> None:
    """`store_now` (what next ticks are computed from) agrees with the store's own time."""
    before = datetime.now().astimezone()
    store_time = await queue.backend.store_now()
    after = datetime.now().astimezone()
    # The machine's servers share this clock: the store's time lies within the call.
    slack = timedelta(milliseconds=50)
    assert before - slack <= store_time <= after + slack
