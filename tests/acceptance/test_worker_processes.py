"""Worker processes under real signals: drain, shutdown timeout, SIGKILL, many jobs, a pause.

Each test starts `python -m tests.acceptance.run_worker` processes (or the real CLI) on a SQLite
file and reads the ledger, a separate SQLite file where handlers log every run, to count
executions. Waits are bounded polls of the ledger or the store, never fixed sleeps.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter

import pytest

from agentqueue import FailureReason, JobStatus, Queue
from tests.acceptance.procs import (
    Env,
    all_jobs,
    complete_events,
    pause_outside_a_write,
    per_job,
    statuses,
    until,
)
from tests.reliability import figures

pytestmark = pytest.mark.slow


async def test_two_worker_processes_complete_a_thousand_jobs_exactly_once(
    env: Env, queue: Queue
) -> None:
    workers = [env.start("--concurrency", "10") for _ in range(2)]
    await until(
        "both workers ready", lambda: len(env.rows("ready")) == 2, timeout=20, workers=workers
    )

    started = time.monotonic()
    ids = await queue.add_jobs(
        [{"job_type": "work", "payload": {"sleep_ms": 5}} for _ in range(1000)]
    )

    async def drained() -> bool:
        return (await statuses(queue))["completed"] == 1000

    await until("1,000 jobs completed", drained, timeout=45, workers=workers)
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    codes = [worker.wait_exit(15) for worker in workers]

    done = env.rows("done")
    starts = env.rows("start")
    jobs = await all_jobs(queue)
    print(f"1,000 jobs on 2 worker processes: {elapsed:.2f} s ({1000 / elapsed:.0f} jobs/s)")
    assert codes == [0, 0]
    assert await statuses(queue) == {"completed": 1000}
    assert set(per_job(done)) == set(ids)
    assert set(per_job(done).values()) == {1}, "a job ran to completion more than once"
    assert set(per_job(starts).values()) == {1}, "a job was started twice without a fault"
    assert {job.attempts for job in jobs} == {1}
    by_pid = Counter(row.pid for row in done)
    assert set(by_pid) == {worker.pid for worker in workers}, f"work per process: {by_pid}"


async def test_sigterm_drains_running_jobs_and_starts_no_new_ones(env: Env, queue: Queue) -> None:
    ids = await queue.add_jobs(
        [{"job_type": "work", "payload": {"sleep_ms": 1000}} for _ in range(25)]
    )
    worker = env.start("--concurrency", "5", "--shutdown-timeout", "20")
    await until("5 jobs running", lambda: len(env.rows("start")) == 5, timeout=20, workers=[worker])

    signalled = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    code = worker.wait_exit(15)
    exit_after = time.monotonic() - signalled

    starts = env.rows("start")
    done = env.rows("done")
    jobs = {job.id: job for job in await all_jobs(queue)}
    running_at_signal = {row.job_id for row in starts}
    print(f"SIGTERM drain: exit {code} after {exit_after:.2f} s")
    figures.record(
        "8-sigterm-drain",
        figures.store_of(env.url),
        in_flight_at_signal=len(running_at_signal),
        finished_before_exit=len({row.job_id for row in done} & running_at_signal),
        claims_after_signal=len(starts) - 5,
        left_processing=(await statuses(queue))["processing"],
        exit_code=code,
        exit_s=round(exit_after, 2),
    )
    assert code == 0, worker.output()
    assert exit_after < 1.0 + 2.0, f"drain took {exit_after:.2f} s for jobs of 1 s"
    assert len(starts) == 5, "a job started after SIGTERM"
    assert {row.job_id for row in done} == running_at_signal
    assert await statuses(queue) == {"completed": 5, "pending": 20}
    for job_id in set(ids) - running_at_signal:
        assert (jobs[job_id].status, jobs[job_id].attempts) == (JobStatus.PENDING, 0)


@pytest.mark.parametrize("job_type", ["work", "work_sync"])
async def test_sigterm_past_the_shutdown_timeout_releases_running_jobs_and_exits(
    env: Env, queue: Queue, job_type: str
) -> None:
    ids = await queue.add_jobs(
        [{"job_type": job_type, "payload": {"sleep_ms": 10_000}} for _ in range(3)]
    )
    worker = env.start("--concurrency", "3", "--shutdown-timeout", "0.5")
    await until("3 jobs running", lambda: len(env.rows("start")) == 3, timeout=20, workers=[worker])

    signalled = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    code = worker.wait_exit(8)
    exit_after = time.monotonic() - signalled

    jobs = await all_jobs(queue)
    print(f"SIGTERM with shutdown timeout 0.5 s ({job_type}): exit after {exit_after:.2f} s")
    figures.record(
        "8-sigterm-shutdown-timeout",
        figures.store_of(env.url),
        handler=job_type,
        in_flight_at_signal=len(ids),
        released=sum(1 for job in jobs if job.status is JobStatus.PENDING),
        attempts_burned=sum(job.attempts for job in jobs),
        exit_code=code,
        exit_s=round(exit_after, 2),
    )
    assert code == 0, worker.output()
    assert exit_after < 3.0, f"took {exit_after:.2f} s to exit"
    assert env.rows("done") == []
    assert [(job.id, job.status, job.attempts) for job in jobs] == [
        (job_id, JobStatus.PENDING, 0) for job_id in ids
    ]
    assert all(job.locked_by is None and job.error_history == [] for job in jobs)
    for job_id in ids:
        types = [event.type.value for event in await queue.get_job_events(job_id)]
        assert types == ["added", "claim", "release"]


async def test_second_sigterm_releases_running_jobs_at_once(env: Env, queue: Queue) -> None:
    ids = await queue.add_jobs(
        [{"job_type": "work", "payload": {"sleep_ms": 10_000}} for _ in range(3)]
    )
    worker = env.start("--concurrency", "3", "--shutdown-timeout", "30")
    await until("3 jobs running", lambda: len(env.rows("start")) == 3, timeout=20, workers=[worker])
    worker.process.send_signal(signal.SIGTERM)
    await until(
        "the worker is draining",
        lambda: "got SIGTERM: draining" in worker.output(),
        timeout=5,
        workers=[worker],
    )

    signalled = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    code = worker.wait_exit(8)
    exit_after = time.monotonic() - signalled

    jobs = await all_jobs(queue)
    print(f"second SIGTERM: exit after {exit_after:.2f} s")
    figures.record(
        "8-second-sigterm",
        figures.store_of(env.url),
        in_flight_at_signal=len(ids),
        released=sum(1 for job in jobs if job.status is JobStatus.PENDING),
        attempts_burned=sum(job.attempts for job in jobs),
        exit_code=code,
        exit_s=round(exit_after, 2),
    )
    assert code == 0, worker.output()
    assert exit_after < 3.0
    assert env.rows("done") == []
    assert [(job.id, job.status, job.attempts) for job in jobs] == [
        (job_id, JobStatus.PENDING, 0) for job_id in ids
    ]


async def test_jobs_of_a_killed_worker_are_rescued_and_completed_exactly_once(
    env: Env, queue: Queue
) -> None:
    ids = await queue.add_jobs(
        [{"job_type": "work", "payload": {"sleep_ms": 1500}} for _ in range(10)]
    )
    doomed = env.start("--concurrency", "4", "--lease", "2")
    await until("4 jobs running", lambda: len(env.rows("start")) == 4, timeout=20, workers=[doomed])
    in_flight = {row.job_id for row in env.rows("start")}

    doomed.process.send_signal(signal.SIGKILL)
    killed_at = time.time()
    assert doomed.wait_exit(5) == -signal.SIGKILL
    # Room for every job at once: the orphans' restart then measures the rescue (lease + one
    # sweep), not the rescuer's free slots.
    rescuer = env.start("--concurrency", "10", "--lease", "2")

    async def all_completed() -> bool:
        return (await statuses(queue))["completed"] == 10

    await until("every job completed", all_completed, timeout=40, workers=[rescuer])
    rescuer.process.send_signal(signal.SIGTERM)
    assert rescuer.wait_exit(10) == 0

    done = env.rows("done")
    starts = env.rows("start")
    jobs = {job.id: job for job in await all_jobs(queue)}
    second_starts = [r.at for r in starts if r.job_id in in_flight and r.pid == rescuer.pid]
    reclaim_latency = max(second_starts) - killed_at
    # The rescue counts from when it could happen: the lease ran out and the rescuer was up
    # (starting a process took over 3 s on a loaded machine).
    [ready] = [r.at for r in env.rows("ready") if r.pid == rescuer.pid]
    rescue_latency = max(second_starts) - max(killed_at + 2, ready)
    print(
        f"SIGKILL: {len(in_flight)} jobs in flight, last one restarted {reclaim_latency:.2f} s"
        " after the kill"
    )
    assert set(per_job(done)) == set(ids), "a job was lost"
    assert set(per_job(done).values()) == {1}, "a job ran to completion twice"
    assert {row.pid for row in done} == {rescuer.pid}
    assert [await complete_events(queue, job_id) for job_id in ids] == [1] * 10
    for job_id in ids:
        job = jobs[job_id]
        if job_id in in_flight:
            assert job.attempts == 2
            [lost] = job.error_history
            assert (lost.attempt, lost.reason) == (1, FailureReason.LEASE_EXPIRED)
            assert per_job(starts)[job_id] == 2
        else:
            assert (job.attempts, job.error_history) == (1, [])
    assert rescue_latency < 4, f"orphans waited {reclaim_latency:.2f} s ({rescue_latency:.2f} s)"


async def test_paused_worker_whose_job_was_taken_over_cannot_complete_it(
    env: Env, queue: Queue
) -> None:
    [job_id] = await queue.add_jobs([{"job_type": "work", "payload": {"sleep_ms": 1500}}])
    paused = env.start("--concurrency", "1", "--lease", "1")
    await until("the job is running", lambda: env.rows("start"), timeout=20, workers=[paused])

    pause_outside_a_write(paused, env.url)
    try:
        rescuer = env.start("--concurrency", "1", "--lease", "1")

        async def completed_by_rescuer() -> bool:
            job = await queue.get_job(job_id)
            return job is not None and job.status is JobStatus.COMPLETED

        await until(
            "the rescuer completed the job", completed_by_rescuer, timeout=20, workers=[rescuer]
        )
        taken_over = await queue.get_job(job_id)
    finally:
        paused.process.send_signal(signal.SIGCONT)

    # The paused worker wakes with its lease gone: either its next heartbeat finds out and
    # stops the handler, or the handler finishes first and its completion is refused.
    await until(
        "the paused worker noticed its lost lease",
        lambda: "lease lost" in paused.output(),
        timeout=10,
        workers=[paused, rescuer],
    )
    for worker in (paused, rescuer):
        worker.process.send_signal(signal.SIGTERM)
    codes = [worker.wait_exit(10) for worker in (paused, rescuer)]

    final = await queue.get_job(job_id)
    late_effects = [row for row in env.rows("done") if row.pid == paused.pid]
    outcome = "handler finished, completion refused" if late_effects else "handler stopped"
    print(f"paused worker after SIGCONT: {outcome}")
    figures.record(
        "2-sigstop-past-lease",
        figures.store_of(env.url),
        jobs=1,
        lease_s=1.0,
        after_sigcont=outcome,
        stale_writes_accepted=0 if final == taken_over else 1,
        completed_by="rescuer" if final and final.output == {"pid": rescuer.pid} else "paused",
        completions=await complete_events(queue, job_id),
    )
    assert codes == [0, 0]
    assert taken_over is not None
    assert final == taken_over, "the paused worker changed the job after it was taken over"
    assert final is not None
    assert final.output == {"pid": rescuer.pid}
    assert final.attempts == 2
    assert await complete_events(queue, job_id) == 1


async def test_real_cli_worker_runs_the_app_and_drains_on_sigterm(env: Env, queue: Queue) -> None:
    ids = await queue.add_jobs(
        [{"job_type": "work", "payload": {"sleep_ms": 10}} for _ in range(20)]
    )
    worker = env.start(
        "worker",
        "--app",
        "tests.acceptance.app:queue",
        "--url",
        env.url,
        "--concurrency",
        "4",
        "--lease",
        "2",
        "--shutdown-timeout",
        "5",
        command=[sys.executable, "-m", "agentqueue"],
    )

    async def drained() -> bool:
        return (await statuses(queue))["completed"] == 20

    await until("20 jobs completed by the CLI worker", drained, timeout=30, workers=[worker])
    worker.process.send_signal(signal.SIGTERM)
    code = worker.wait_exit(10)

    assert code == 0, worker.output()
    assert set(per_job(env.rows("done"))) == set(ids)
    assert {row.pid for row in env.rows("done")} == {worker.pid}
    assert "worker stopped after 20 job(s): complete=20" in worker.output()
