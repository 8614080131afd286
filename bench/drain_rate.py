"""Drain rate of one worker process: N no-op jobs already enqueued, one `Worker(concurrency=10)`.

The harness's drain phase (bench/peers/bench_agentqueue.py) on a store of its own name: the
orchestrator deletes the store, enqueues N jobs with `add_jobs` (1,000 per call), then starts a
worker subprocess that runs `queue.worker(concurrency=10, handle_signals=False).run()` with an
`async def noop(payload, ctx)` handler. The rate is N-1 over the time from the first to the
last handler start (as the harness computes it); the worker's CPU per job is its process CPU
(user + system) over the same span, divided by the jobs started in it.

    .venv/bin/python bench/drain_rate.py --store redis --repeat 3
    .venv/bin/python bench/drain_rate.py --store postgres --cprofile /tmp/w.prof
    AQB_AGENTQUEUE_SRC=/tmp/aq-main .venv/bin/python bench/drain_rate.py --store sqlite

Prints one JSON line per run: {"store", "jobs_per_s", "cpu_us_per_job", "src"}.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import benchkit
import workerproc

logging.getLogger("agentqueue").setLevel(logging.WARNING)


async def fill(store: str, name: str, jobs: int) -> None:
    """A fresh store holding `jobs` pending no-op jobs."""
    await benchkit.reset(store, name)
    queue = workerproc.make_queue(store, name)
    await queue.open()
    for start in range(0, jobs, 1000):
        await queue.add_jobs(
            [
                {"job_type": "noop", "payload": {"i": i, "ts": 0.0}}
                for i in range(start, min(jobs, start + 1000))
            ]
        )
    await queue.close()


async def drain_in_child(store: str, name: str, jobs: int, profile: str) -> dict[str, Any]:
    """The worker process: run the worker until `jobs` handlers started, report the span."""
    starts: list[float] = []
    cpu: list[float] = []
    done = asyncio.Event()

    def started() -> None:
        now = time.perf_counter()
        if not starts:
            cpu.append(time.process_time())
        starts.append(now)
        if len(starts) >= jobs:
            cpu.append(time.process_time())
            done.set()

    queue = workerproc.make_queue(store, name, started)
    await queue.open()
    calls = count_calls(queue.backend)
    worker = queue.worker(concurrency=10, handle_signals=False)
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(done.wait(), 300)
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    worker.request_stop()
    await asyncio.wait_for(task, 30)
    await queue.close()
    span = starts[-1] - starts[0]
    return {
        "jobs_per_s": round((len(starts) - 1) / span),
        "cpu_us_per_job": round((cpu[1] - cpu[0]) / (len(starts) - 1) * 1e6, 1),
        "counts": dict(worker.counts),
        "store_calls": dict(calls),
    }


def count_calls(store: Any) -> Counter[str]:
    """Count the worker's store calls by name (wrapping the instance's methods)."""
    calls: Counter[str] = Counter()
    for name in ("claim", "claim_after_change", "finish", "finish_and_claim", "heartbeat"):
        method = getattr(store, name, None)
        if method is None:
            continue

        async def counted(*args: Any, _method: Any = method, _name: str = name, **kw: Any) -> Any:
            calls[_name] += 1
            return await _method(*args, **kw)

        setattr(store, name, counted)
    return calls


async def one_run(
    store: str, name: str, jobs: int, profile: str, pyspy: str = ""
) -> dict[str, Any]:
    """Fill the store, drain it in a worker subprocess, return its figures."""
    await fill(store, name, jobs)
    command = [sys.executable, __file__, "--role", "worker", "--store", store, "--name", name]
    command += ["--jobs", str(jobs), "--cprofile", profile]
    if pyspy:  # sampled, so the worker runs at nearly full speed (cProfile slows it ~2x)
        spy = str(Path(sys.executable).with_name("py-spy"))
        command = [spy, "record", "-r", "250", "-f", "raw", "-o", pyspy, "--", *command]
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    # py-spy, when it wraps the worker, prints its own lines too: the report is the last JSON one.
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    result = json.loads(lines[-1])
    await benchkit.reset(store, name)
    return {"store": store, **result, "src": benchkit.source_id()}


async def main(args: argparse.Namespace) -> None:
    """Orchestrate `--repeat` runs per store (or be the worker process)."""
    if args.role == "worker":
        print(json.dumps(await drain_in_child(args.store, args.name, args.jobs, args.cprofile)))
        return
    for store in benchkit.stores_arg(args.store):
        rates = []
        for _ in range(args.repeat):
            row = await one_run(store, args.name, args.jobs, args.cprofile, args.pyspy)
            rates.append(row["jobs_per_s"])
            print(json.dumps(row), flush=True)
        if args.repeat > 1:
            print(json.dumps({"store": store, "median_jobs_per_s": statistics.median(rates)}))


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description="drain rate of one worker process")
    parser.add_argument("--store", default="redis", help="sqlite, postgres, redis or all")
    parser.add_argument("--name", default="processbench")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cprofile", default="", help="write the worker's cProfile here")
    parser.add_argument("--pyspy", default="", help="record the worker with py-spy (raw) here")
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
