"""force_kill_on_timeout: the handler runs in a child process that is killed at the deadline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import killable_handlers as handlers
import pytest
from worker_kit import eventually, fast_worker, running, wait_for_status

from agentqueue import FailureReason, JobStatus, Queue
from agentqueue.errors import InvalidArgument


async def test_cpu_bound_handler_is_killed_at_its_deadline(queue: Queue, tmp_path: Path) -> None:
    # The deadline counts from the attempt's start, which includes spawning the child: on a
    # loaded machine that took over 2 s, so the child was killed before it wrote its pid. 6 s
    # leaves room; the test first sees the child running, then sees it killed at the deadline.
    queue.handler("spin", force_kill_on_timeout=True, timeout=6)(handlers.spin)
    pid_file = tmp_path / "child.pid"
    job_id = await queue.add_job("spin", {"pid_file": str(pid_file)}, max_attempts=1)
    async with running(fast_worker(queue)):

        async def child_started() -> bool:
            return pid_file.exists() and pid_file.read_text() != ""

        await eventually(child_started, timeout=15)
        job = await wait_for_status(queue, job_id, JobStatus.FAILED, timeout=15)
    assert job.failure_reason is FailureReason.TIMEOUT
    child = int(pid_file.read_text())
    assert child != os.getpid()

    async def child_gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    await eventually(child_gone, timeout=10)


async def test_result_and_errors_come_back_from_the_child(queue: Queue) -> None:
    queue.handler("double", force_kill_on_timeout=True, timeout=30)(handlers.double)
    queue.handler("explode", force_kill_on_timeout=True, timeout=30)(handlers.explode)
    queue.handler("whoami", force_kill_on_timeout=True, timeout=30)(handlers.whoami)
    doubled = await queue.add_job("double", {"n": 21})
    exploded = await queue.add_job("explode", max_attempts=1)
    asked = await queue.add_job("whoami")
    async with running(fast_worker(queue)):
        done = await wait_for_status(queue, doubled, JobStatus.COMPLETED, timeout=15)
        failed = await wait_for_status(queue, exploded, JobStatus.FAILED, timeout=15)
        who = await wait_for_status(queue, asked, JobStatus.COMPLETED, timeout=15)
    assert done.output == 42
    assert failed.failure_reason is FailureReason.HANDLER_ERROR
    assert failed.last_error == "ValueError: bad input in the child"
    assert failed.error_history[-1].traceback is not None
    assert "explode" in failed.error_history[-1].traceback
    assert who.output["job_id"] == asked
    assert who.output["attempt"] == 1
    assert who.output["pid"] != os.getpid()


async def test_a_handler_that_cannot_be_pickled_fails_with_the_reason(queue: Queue) -> None:
    @queue.handler("local", force_kill_on_timeout=True, timeout=5)
    def local(payload: dict[str, Any]) -> None:
        return None

    job_id = await queue.add_job("local", max_attempts=1)
    async with running(fast_worker(queue)):
        job = await wait_for_status(queue, job_id, JobStatus.FAILED, timeout=15)
    assert "top-level function" in (job.last_error or "")


async def test_force_kill_needs_a_timeout(queue: Queue) -> None:
    queue.handler("double_no_deadline", force_kill_on_timeout=True)(handlers.double)
    with pytest.raises(InvalidArgument, match="needs a timeout"):
        await queue.add_job("double_no_deadline", {"n": 1})
    assert await queue.add_job("double_no_deadline", {"n": 1}, timeout=5) > 0
