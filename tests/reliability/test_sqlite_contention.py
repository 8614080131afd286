"""Reliability scenario 9a: one SQLite file, 8 worker processes, 2 enqueuers and a REST reader.

SQLite has one writer at a time. The store takes the write lock up front (`BEGIN IMMEDIATE`) and
waits for it itself, so no "database is locked" may reach anyone: not an enqueuer's `add_job`,
not a worker (which would log "claim failed" or "heartbeat failed"), not a REST client. Every
job is completed exactly once. (Disk full on SQLite is in test_store_full.py.)
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from agentqueue import Queue
from agentqueue.api import ApiSettings, create_app
from tests.acceptance.conftest import env, queue  # noqa: F401 - the fixtures of this test
from tests.acceptance.procs import Env, Worker, statuses, until
from tests.reliability import figures

pytestmark = pytest.mark.slow

ENQUEUER = [sys.executable, "-m", "tests.reliability.enqueuer"]
PER_ENQUEUER = 100


# The acceptance fixtures on one store: SQLite (the only one with a store-wide write lock).
@pytest.mark.parametrize("shared_url", ["sqlite"], indirect=True)
async def test_eight_workers_two_enqueuers_and_a_rest_reader_never_see_database_is_locked(
    env: Env,  # noqa: F811
    queue: Queue,  # noqa: F811
) -> None:
    workers = [env.start("--concurrency", "2") for _ in range(8)]
    await until("8 workers ready", lambda: len(env.rows("ready")) == 8, timeout=60, workers=workers)
    started = time.monotonic()
    enqueuers = [env.start("--jobs", str(PER_ENQUEUER), command=ENQUEUER) for _ in range(2)]
    total = 2 * PER_ENQUEUER

    reads: Counter[int] = Counter()
    read_errors: list[str] = []
    app = create_app(queue, settings=ApiSettings(dashboard=False, mcp=False), close_queue=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:

            async def drained() -> bool:
                # The REST reader: a listing and the stats on every poll, while all write.
                for path in ("/api/v1/jobs?limit=50", "/api/v1/stats"):
                    answer = await client.get(path)
                    reads[answer.status_code] += 1
                    if answer.status_code != 200:
                        read_errors.append(answer.text)
                return (await statuses(queue))["completed"] == total

            await until("every job completed", drained, timeout=90, workers=workers)
    elapsed = time.monotonic() - started

    results = [_result(enqueuer) for enqueuer in enqueuers]
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    codes = [worker.wait_exit(20) for worker in workers]
    worker_lock_lines = [
        line for worker in workers for line in worker.output().splitlines() if "locked" in line
    ]
    enqueue_errors = [error for result in results for error in result["errors"]]
    done = Counter(row.job_id for row in env.rows("done"))
    ids = {job_id for result in results for job_id in result["ids"]}
    row = figures.record(
        "9-sqlite-contention",
        "sqlite",
        workers=8,
        enqueuers=2,
        jobs=total,
        jobs_per_s=round(total / elapsed, 1),
        locked_errors_to_enqueuers=sum("locked" in error for error in enqueue_errors),
        locked_errors_to_workers=len(worker_lock_lines),
        rest_reads=sum(reads.values()),
        rest_errors=len(read_errors),
        lost=len(ids - set(done)),
        duplicates=sum(1 for count in done.values() if count > 1),
    )
    assert enqueue_errors == []
    assert worker_lock_lines == []
    assert read_errors == []
    assert codes == [0] * 8
    assert len(ids) == total
    assert row["lost"] == 0
    assert row["duplicates"] == 0


def _result(enqueuer: Worker) -> dict[str, list[Any]]:
    """The enqueuer's report (its last `RESULT` line), once it has exited."""
    assert enqueuer.wait_exit(60) == 0, enqueuer.output()
    [line] = [line for line in enqueuer.output().splitlines() if line.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))
