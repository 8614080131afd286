"""examples/postgres_multi_worker: two worker processes share one PostgreSQL queue (the test's
own schema); every job runs once, and both workers take part."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from agentqueue import JobStatus, Queue
from tests.acceptance.procs import all_jobs, complete_events, until
from tests.examples.conftest import Runner

pytestmark = pytest.mark.slow
EXAMPLE = "postgres_multi_worker"
JOBS = 24


async def test_two_workers_share_the_jobs_and_each_runs_once(postgres_runner: Runner) -> None:
    runner = postgres_runner
    async with Queue(runner.url) as queue:  # migrates the schema before the workers race to
        workers = [
            runner.agentqueue(EXAMPLE, "worker", "--app", "tasks:queue", "--concurrency", "2")
            for _ in range(2)
        ]

        async def both_alive() -> bool:
            return len(await queue.list_workers()) == 2

        await until("both workers announce themselves", both_alive, timeout=30, workers=workers)
        assert runner.run(EXAMPLE, "enqueue.py", str(JOBS)).strip() == f"added {JOBS} jobs"

        async def all_completed() -> bool:
            done = (await queue.stats()).totals.get(JobStatus.COMPLETED, 0)
            return done == JOBS

        await until(f"{JOBS} jobs complete", all_completed, timeout=60, workers=workers)
        jobs = await all_jobs(queue)
        per_worker = Counter(str(job.output["worker"]) for job in jobs if job.output)
        assert sum(per_worker.values()) == JOBS
        # 24 jobs of 0.2 s on 2 x 2 slots: one worker alone could not have taken them all
        # before the other claimed some.
        assert len(per_worker) == 2, per_worker
        assert all([await complete_events(queue, job.id) == 1 for job in jobs])

    summary = runner.run(EXAMPLE, "summary.py")
    for name, count in per_worker.items():
        assert f"{name}\t{count}" in summary
    assert "live workers: 2" in summary
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    assert [worker.wait_exit(30) for worker in workers] == [0, 0]
