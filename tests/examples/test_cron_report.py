"""examples/cron_report: a schedule declared in code; the worker's ticks write report files."""

from __future__ import annotations

import json
import signal

import pytest

from agentqueue import Queue
from tests.acceptance.procs import until
from tests.examples.conftest import Runner

pytestmark = pytest.mark.slow


async def test_each_tick_of_the_schedule_writes_a_report(runner: Runner) -> None:
    reports = runner.tmp / "reports"
    # A seconds field keeps the test quick: a tick every second.
    worker = runner.agentqueue(
        "cron_report",
        "worker",
        "--app",
        "report:queue",
        REPORT_EVERY="* * * * * *",
        REPORT_DIR=str(reports),
    )
    await until(
        "two ticks wrote reports",
        lambda: len(list(reports.glob("report-*.json"))) >= 2,
        timeout=30,
        workers=[worker],
    )
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.output()

    async with Queue(runner.url) as queue:
        [schedule] = await queue.list_cron_jobs()
        assert (schedule.name, schedule.expression, schedule.job_type) == (
            "daily-report",
            "* * * * * *",
            "write_report",
        )
        for path in sorted(reports.glob("report-*.json")):
            report = json.loads(path.read_text())
            job = await queue.get_job(report["job_id"])
            assert job is not None
            assert job.job_type == "write_report"
            assert job.idempotency_key is not None
            assert job.idempotency_key.startswith("cron:daily-report:")  # one job per tick
            # The report counts the store's jobs: at least itself, running as it wrote.
            assert report["jobs_by_status"]["processing"] >= 1
