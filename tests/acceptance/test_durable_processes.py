"""Durable workflows in real worker processes that get SIGKILLed: each step's effect once."""

from __future__ import annotations

import signal

import pytest

from agentqueue import JobStatus, Queue
from tests.acceptance.procs import Env, until

pytestmark = pytest.mark.slow


async def test_steps_take_effect_once_when_workers_are_killed_while_waiting_and_mid_step(
    env: Env, queue: Queue
) -> None:
    job_id = await queue.add_job("workflow", {"wait_seconds": 1.5, "step_two_ms": 1500})

    first = env.start("--concurrency", "2", "--lease", "2")

    async def parked() -> bool:
        job = await queue.get_job(job_id)
        return job is not None and job.status is JobStatus.WAITING

    await until("step one done, job waiting", parked, timeout=20, workers=[first])
    first.process.send_signal(signal.SIGKILL)  # killed while the job waits
    assert first.wait_exit(5) == -signal.SIGKILL

    second = env.start("--concurrency", "2", "--lease", "2")
    await until(
        "step two started in the second worker",
        lambda: any(r.event == "started:two" and r.pid == second.pid for r in env.rows()),
        timeout=20,
        workers=[second],
    )
    second.process.send_signal(signal.SIGKILL)  # killed while step two runs
    assert second.wait_exit(5) == -signal.SIGKILL

    third = env.start("--concurrency", "2", "--lease", "2")
    announced = await until(
        "the token was announced",
        lambda: [r.event for r in env.rows() if r.event.startswith("token:")],
        timeout=30,
        workers=[third],
    )
    assert len(announced) == 1
    token_id = announced[0].removeprefix("token:")
    await queue.complete_token(token_id, {"approved": True})

    async def completed() -> bool:
        job = await queue.get_job(job_id)
        return job is not None and job.status is JobStatus.COMPLETED

    await until("the workflow completed", completed, timeout=20, workers=[third])
    third.process.send_signal(signal.SIGTERM)
    assert third.wait_exit(10) == 0

    effects = [r.event for r in env.rows() if r.event.startswith("effect:")]
    assert sorted(effects) == ["effect:one", "effect:three", "effect:two"]
    assert [r.event for r in env.rows() if r.event == "started:two"] == ["started:two"] * 2
    job = await queue.get_job(job_id)
    assert job is not None
    assert job.output == {"steps": ["one", "two", "three"], "answer": {"approved": True}}
