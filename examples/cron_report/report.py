"""A cron-driven report: every tick, a job counts the store's jobs by status and writes a JSON
report file.

    agentqueue worker --app report:queue

The schedule is declared in code (`@queue.cron`); every worker upserts it when it starts, and
however many workers run, each tick makes one job. `REPORT_EVERY` is a cron expression (five
fields, or six with a leading seconds field); `REPORT_DIR` is where reports go.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from agentqueue import JobContext, Queue

queue = Queue()  # $AGENTQUEUE_URL, else sqlite:///./agentqueue.db

EVERY = os.environ.get("REPORT_EVERY", "0 7 * * *")  # 07:00 UTC daily; "*/10 * * * * *": 10 s
REPORT_DIR = Path(os.environ.get("REPORT_DIR", "reports"))


@queue.cron(EVERY, name="daily-report", timezone="UTC")
@queue.handler("write_report", description="Count jobs by status and write a report file")
async def write_report(payload: dict[str, object], ctx: JobContext) -> dict[str, object]:
    """Read the queue's stats and write them to REPORT_DIR/report-<job id>.json."""
    stats = await queue.stats()
    report = {
        "written_at": datetime.now(UTC).isoformat(),
        "job_id": ctx.job_id,
        "jobs_by_status": {status.value: count for status, count in stats.totals.items()},
    }
    # File writes block: off the event loop, where the worker's other jobs run.
    path = await asyncio.to_thread(save, REPORT_DIR / f"report-{ctx.job_id}.json", report)
    return {"path": str(path)}


def save(path: Path, report: dict[str, object]) -> Path:
    """Write the report as JSON, making its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path
