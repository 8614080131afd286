"""Reliability scenarios 1 and 3: a worker killed mid-batch, a handler that blocks its loop.

1. Four worker processes share a batch; one is SIGKILLed while it holds 10 running jobs. Every
   job must end completed exactly once (the store's `complete` events), none lost, and the dead
   worker's jobs must be running again within the lease plus a sweep. A job whose handler had
   finished its effect but whose completion died with the process runs twice: that is the
   documented at-least-once, and the only duplicate effect allowed.
3. A handler that blocks the event loop (`time.sleep` in `async def`) for longer than the lease.
   agentqueue heartbeats on the worker's event loop, so the heartbeats stop too: the job must be
   reclaimed by another worker, and the blocked worker's late completion refused (it logs
   "lease lost"), never silently accepted. (The other outcome the plan allows, heartbeats on a
   thread of their own, is not what agentqueue does.)

The ledger (tests/acceptance/ledger.py) is a SQLite file outside the store, so a fault of the
store cannot destroy the evidence. Stores: SQLite, PostgreSQL, Redis.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence

import pytest

from agentqueue import JobEvent, JobStatus, Queue
from tests.acceptance.conftest import env, queue  # noqa: F401 - the fixtures of these tests
from tests.acceptance.procs import Env, all_jobs, complete_events, statuses, until
from tests.reliability import figures

pytestmark = pytest.mark.slow

FAULT_WORKER = [sys.executable, "-m", "tests.reliability.fault_worker"]
LEASE = 2.0
SWEEP = LEASE / 4  # run_worker's rescue_interval


async def job_histories(store: Queue, ids: Sequence[int]) -> dict[int, list[JobEvent]]:
    """Every job's events, read 50 at a time (one read per job would take seconds)."""
    histories: dict[int, list[JobEvent]] = {}
    for start in range(0, len(ids), 50):
        chunk = ids[start : start + 50]
        found = await asyncio.gather(*(store.get_job_events(job_id) for job_id in chunk))
        histories.update(zip(chunk, found, strict=True))
    return histories


@pytest.mark.parametrize(
    "total",
    [1000, pytest.param(10_000, marks=[pytest.mark.soak, pytest.mark.timeout(600)], id="10000")],
    ids=str,
)
async def test_sigkill_one_of_four_workers_loses_nothing_and_completes_each_job_once(
    env: Env,  # noqa: F811
    queue: Queue,  # noqa: F811
    total: int,
) -> None:
    workers = [env.start("--concurrency", "10", "--lease", str(LEASE)) for _ in range(4)]
    doomed, survivors = workers[0], workers[1:]
    await until("4 workers ready", lambda: len(env.rows("ready")) == 4, timeout=30, workers=workers)
    ids = await queue.add_jobs(
        [{"job_type": "work", "payload": {"sleep_ms": 100}} for _ in range(total)]
    )
    started = time.monotonic()

    def doomed_running() -> set[int]:
        runs = env.rows()
        begun = {r.job_id for r in runs if r.pid == doomed.pid and r.event == "start"}
        return begun - {r.job_id for r in runs if r.pid == doomed.pid and r.event == "done"}

    await until(
        "the doomed worker holds 10 running jobs, mid-batch",
        lambda: len(doomed_running()) >= 10 and len(env.rows("done")) >= total // 10,
        timeout=30,
        workers=workers,
    )
    doomed.process.send_signal(signal.SIGKILL)
    killed_at = time.time()
    assert doomed.wait_exit(5) == -signal.SIGKILL
    in_flight = doomed_running()

    async def all_completed() -> bool:
        return (await statuses(queue))["completed"] == total

    await until("every job completed", all_completed, timeout=30 + total / 20, workers=survivors)
    elapsed = time.monotonic() - started
    for worker in survivors:
        worker.process.send_signal(signal.SIGTERM)
    codes = [worker.wait_exit(15) for worker in survivors]

    runs = env.rows()
    jobs = {job.id: job for job in await all_jobs(queue)}
    histories = await job_histories(queue, ids)
    completions = Counter(
        {
            job_id: sum(e.type == "complete" for e in history)
            for job_id, history in histories.items()
        }
    )
    rescued = {
        job_id: e.at.timestamp()
        for job_id, history in histories.items()
        for e in history
        if e.type == "rescue"
    }
    done = Counter(r.job_id for r in runs if r.event == "done")
    # Orphans: jobs the dead worker had started whose outcome is another worker's.
    orphans = {
        r.job_id
        for r in runs
        if r.pid == doomed.pid and r.event == "start" and jobs[r.job_id].output != {"pid": r.pid}
    }
    restarts = {
        job_id: min(
            r.at for r in runs if r.job_id == job_id and r.event == "start" and r.pid != doomed.pid
        )
        for job_id in orphans
    }
    # Reclaimed = back to pending (the sweep's `rescue` event). A rescued job keeps its run_at,
    # so it goes back to the head of the line: its restart waits for a free slot, not for the
    # backlog enqueued after it.
    reclaim_latency = max(rescued[job_id] for job_id in orphans) - killed_at
    resume_latency = max(restarts.values()) - killed_at
    dup_effects = {job_id for job_id, count in done.items() if count > 1}
    row = figures.record(
        "1-sigkill-1-of-4",
        figures.store_of(env.url),
        jobs=total,
        in_flight_at_kill=len(in_flight),
        orphans=len(orphans),
        lost=sum(1 for job_id in ids if jobs[job_id].status is not JobStatus.COMPLETED),
        completed_twice=sum(1 for count in completions.values() if count > 1),
        dup_effects=len(dup_effects),
        stuck=sum(1 for job in jobs.values() if job.status is JobStatus.PROCESSING),
        rescued_others=len(set(rescued) - orphans),
        reclaim_latency_s=round(reclaim_latency, 2),
        resume_latency_s=round(resume_latency, 2),
        total_s=round(elapsed, 2),
    )
    assert codes == [0, 0, 0], [w.output() for w in survivors]
    assert row["lost"] == 0
    assert row["stuck"] == 0
    assert set(completions.values()) == {1}, "a job was recorded completed twice (or never)"
    assert in_flight <= orphans, "a job running on the killed worker was not taken over"
    # At-least-once: only a job whose first effect came from the killed process runs twice
    # (or one a loaded machine starved of heartbeats for a lease, counted in `rescued_others`).
    assert dup_effects <= set(rescued)
    assert all(jobs[job_id].attempts == 2 for job_id in orphans)
    assert orphans <= set(rescued), "a job of the dead worker was not rescued by a sweep"
    assert reclaim_latency <= LEASE + SWEEP + 1.0, f"orphans reclaimed {reclaim_latency:.2f} s late"
    assert resume_latency <= LEASE + SWEEP + 2.0, f"orphans restarted {resume_latency:.2f} s late"


async def test_a_handler_blocking_the_event_loop_past_its_lease_is_reclaimed_and_its_late_completion_refused(  # noqa: E501
    env: Env,  # noqa: F811
    queue: Queue,  # noqa: F811
) -> None:
    lease = 1.0
    block = 4 * lease
    # Two workers, both ready before the job exists: whichever claims it has its loop blocked,
    # the other, whose loop is free, sees the lease run out.
    pair = [
        env.start("--concurrency", "2", "--lease", str(lease), command=FAULT_WORKER)
        for _ in range(2)
    ]
    await until("both workers ready", lambda: len(env.rows("ready")) == 2, timeout=30, workers=pair)
    [job_id] = await queue.add_jobs(
        [{"job_type": "block_loop", "payload": {"block_ms": int(block * 1000)}}]
    )
    [first] = await until(
        "the blocking job started", lambda: env.rows("start"), timeout=20, workers=pair
    )
    blocked_at = first.at
    blocked, rescuer = sorted(pair, key=lambda worker: worker.pid != first.pid)

    async def completed() -> bool:
        job = await queue.get_job(job_id)
        return job is not None and job.status is JobStatus.COMPLETED

    await until("the job is completed", completed, timeout=30, workers=[blocked, rescuer])
    await until(
        "the blocked worker ran to its end and was told its lease was lost",
        lambda: (
            "lease lost" in blocked.output() and any(r.pid == blocked.pid for r in env.rows("done"))
        ),
        timeout=20,
        workers=[blocked, rescuer],
    )
    # The blocked worker is still a working worker: it takes and completes a next job.
    [after] = await queue.add_jobs([{"job_type": "work", "payload": {"sleep_ms": 10}}])
    await until(
        "a next job completes",
        lambda: any(r.job_id == after for r in env.rows("done")),
        timeout=20,
        workers=[blocked, rescuer],
    )
    for worker in (blocked, rescuer):
        worker.process.send_signal(signal.SIGTERM)
    codes = [worker.wait_exit(15) for worker in (blocked, rescuer)]

    job = await queue.get_job(job_id)
    assert job is not None
    runs = [r for r in env.rows() if r.job_id == job_id]
    rescued = [r for r in runs if r.pid == rescuer.pid and r.event == "start"]
    figures.record(
        "3-event-loop-blocked-past-lease",
        figures.store_of(env.url),
        jobs=1,
        lease_s=lease,
        blocked_s=block,
        outcome="reclaimed; late completion refused",
        reclaimed_after_s=round(rescued[0].at - blocked_at, 2) if rescued else None,
        completed_by=("rescuer" if job.output == {"pid": rescuer.pid} else "blocked worker"),
        completions=await complete_events(queue, job_id),
        lost=0 if job.status is JobStatus.COMPLETED else 1,
    )
    assert codes == [0, 0]
    assert "heartbeat ran" in blocked.output(), "the blocked heartbeats went unreported"
    assert rescued, "the job of the blocked worker was never reclaimed"
    assert job.output == {"pid": rescuer.pid}, "the blocked worker's late completion was accepted"
    assert job.attempts == 2
    assert await complete_events(queue, job_id) == 1
    assert [(r.pid, r.event) for r in runs if r.pid == blocked.pid] == [
        (blocked.pid, "start"),
        (blocked.pid, "done"),
    ]
