"""Flow limits across real worker processes: a group limit and a rate limit hold cluster-wide.

Handlers log `start` and `done` in the ledger (outside the store); a job's logged interval lies
inside its time in `processing`, so the overlap of logged intervals can only understate the
store's concurrency, never overstate it. Rates are checked on the store's own claim times.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from datetime import timedelta

import pytest

from agentqueue import Queue
from tests.acceptance import ledger
from tests.acceptance.procs import Env, all_jobs, per_job, statuses, until

pytestmark = pytest.mark.slow


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        current += step
        peak = max(peak, current)
    return peak


def intervals_by_job(rows: list[ledger.Row]) -> dict[int, tuple[float, float]]:
    """Each job's (start, done) times from the ledger."""
    starts = {row.job_id: row.at for row in rows if row.event == "start"}
    return {row.job_id: (starts[row.job_id], row.at) for row in rows if row.event == "done"}


async def test_a_group_limit_of_two_holds_across_four_worker_processes(
    env: Env, queue: Queue
) -> None:
    await queue.set_limit(group="tenant-42", max_concurrent=2)
    workers = [env.start("--concurrency", "4") for _ in range(4)]
    await until("workers ready", lambda: len(env.rows("ready")) == 4, timeout=20, workers=workers)
    limited = await queue.add_jobs(
        [{"job_type": "work", "payload": {"sleep_ms": 60}, "group": "tenant-42"} for _ in range(30)]
    )
    free = await queue.add_jobs(
        [{"job_type": "work", "payload": {"sleep_ms": 60}, "group": "tenant-7"} for _ in range(16)]
    )

    async def drained() -> bool:
        return (await statuses(queue))["completed"] == 46

    await until("every job completed", drained, timeout=60, workers=workers)
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    assert [worker.wait_exit(15) for worker in workers] == [0] * 4

    rows = env.rows()
    spans = intervals_by_job(rows)
    assert set(per_job(env.rows("done")).values()) == {1}
    group_peak = peak_overlap([spans[i] for i in limited])
    free_peak = peak_overlap([spans[i] for i in free])
    print(f"peak concurrency: tenant-42 {group_peak} (limit 2), tenant-7 {free_peak}")
    assert group_peak <= 2
    assert group_peak == 2, "the limit should be used, not just respected"
    assert free_peak > 2, "an unlimited group is not held to another group's limit"


async def test_a_rate_limit_holds_across_two_worker_processes(env: Env, queue: Queue) -> None:
    rate, period = 5, 1.0
    await queue.set_limit(job_type="work", rate_limit=rate, rate_period=period)
    workers = [env.start("--concurrency", "10") for _ in range(2)]
    await until("workers ready", lambda: len(env.rows("ready")) == 2, timeout=20, workers=workers)
    ids = await queue.add_jobs([{"job_type": "work", "payload": {}} for _ in range(20)])

    async def drained() -> bool:
        return (await statuses(queue))["completed"] == 20

    await until("every job completed", drained, timeout=60, workers=workers)
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    assert [worker.wait_exit(15) for worker in workers] == [0] * 2

    jobs = {job.id: job for job in await all_jobs(queue)}
    claimed = sorted(jobs[i].started_at for i in ids)  # type: ignore[type-var]
    assert all(at is not None for at in claimed)
    window = timedelta(seconds=period)
    worst = max(sum(1 for t in claimed if first <= t < first + window) for first in claimed)
    spread = claimed[-1] - claimed[0]
    by_pid: dict[int, int] = defaultdict(int)
    for row in env.rows("start"):
        by_pid[row.pid] += 1
    print(f"20 jobs at {rate}/s: most in any {period} s window {worst}, spread {spread}, {by_pid}")
    assert worst <= rate
    # 20 starts at 5 per second need at least three full windows after the first start.
    assert spread >= timedelta(seconds=3 * period)
