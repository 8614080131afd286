"""Helpers of the acceptance tests: worker processes, the test's environment, bounded polls."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentqueue import Job, Queue
from tests.acceptance import ledger

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = [sys.executable, "-m", "tests.acceptance.run_worker"]


@dataclass
class Worker:
    """A worker process and the file its output goes to."""

    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def output(self) -> str:
        """The process's stdout and stderr so far (for failure messages)."""
        return self.log.read_text(errors="replace")[-6000:]

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit and return its code; fail after `timeout` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {self.pid} still running after {timeout} s:\n{self.output()}")


@dataclass
class Env:
    """One test's store, ledger and process launcher."""

    url: str
    ledger: str
    tmp: Path
    started: list[Worker]

    def environ(self) -> dict[str, str]:
        """The environment of a worker process."""
        path = os.environ.get("PYTHONPATH")
        return {
            **os.environ,
            "AGENTQUEUE_URL": self.url,
            "AGENTQUEUE_LEDGER": self.ledger,
            "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT),
        }

    def start(self, *args: str, command: list[str] | None = None) -> Worker:
        """Start a worker process (the test runner by default) with extra arguments."""
        log = self.tmp / f"worker-{len(self.started)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [*(command or RUNNER), *args],
                env=self.environ(),
                cwd=self.tmp,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, log)
        self.started.append(worker)
        return worker

    def rows(self, event: str | None = None) -> list[ledger.Row]:
        """The ledger's rows (of one event)."""
        return ledger.rows(self.ledger, event)


def kill_all(workers: Sequence[Worker]) -> None:
    """Kill every process still running and reap them all (a test's clean-up)."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait(10)


async def until(
    what: str, check: Callable[[], Any], *, timeout: float, workers: Sequence[Worker] = ()
) -> Any:
    """Poll `check` (sync or async) every 20 ms until truthy; fail with the workers' logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        dead = [w for w in workers if w.process.poll() is not None]
        if time.monotonic() > deadline or dead:
            logs = "\n".join(f"--- worker {w.pid} ---\n{w.output()}" for w in workers)
            reason = f"worker {dead[0].pid} exited" if dead else f"not within {timeout} s"
            pytest.fail(f"{what}: {reason} (last value {value!r})\n{logs}")
        await asyncio.sleep(0.02)


async def all_jobs(queue: Queue) -> list[Job]:
    """Every job in the store, oldest first."""
    jobs: list[Job] = []
    cursor = None
    while True:
        page = await queue.list_jobs(limit=1000, cursor=cursor, order="oldest")
        jobs.extend(page.items)
        if page.next_cursor is None:
            return jobs
        cursor = page.next_cursor


async def statuses(queue: Queue) -> Counter[str]:
    """How many jobs are in each status (zeros left out)."""
    totals = (await queue.stats()).totals
    return Counter({status.value: count for status, count in totals.items() if count})


async def complete_events(queue: Queue, job_id: int) -> int:
    """How many times the store recorded the job as completed."""
    return sum(1 for event in await queue.get_job_events(job_id) if event.type == "complete")


def per_job(rows: list[ledger.Row]) -> Counter[int]:
    """Ledger rows counted per job id."""
    return Counter(row.job_id for row in rows)


def pause_outside_a_write(worker: Worker, url: str) -> None:
    """SIGSTOP `worker` at a moment it does not hold the SQLite write lock.

    A process stopped inside a write transaction (a heartbeat, say) would keep every other
    process from writing until it resumes: SQLite has one writer. Such a pause is retried.
    """
    if not url.startswith("sqlite"):
        # Other stores have no store-wide write lock: a paused holder of a row lock is
        # skipped (SKIP LOCKED), and Redis scripts run whole.
        worker.process.send_signal(signal.SIGSTOP)
        return
    path = url.removeprefix("sqlite:///")
    for _ in range(50):
        worker.process.send_signal(signal.SIGSTOP)
        probe = sqlite3.connect(path, timeout=0.5, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            worker.process.send_signal(signal.SIGCONT)
        finally:
            probe.close()
    pytest.fail("could not pause the worker outside a write transaction")
