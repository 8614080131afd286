"""Scale-out: jobs/s with 1, 2 and 4 worker processes on one store (issue 10).

    .venv/bin/python bench/scale_out.py            # postgres and redis, 20,000 jobs, 1,2,4 workers
    .venv/bin/python bench/scale_out.py --store redis --jobs 5000 --workers 1,2

Method, as the peer harness's process phase (bench/README.md) but with K workers: `--jobs`
no-op jobs are enqueued with `queue.add_jobs` (1,000 a call); then K worker processes start
(workerproc.py: `queue.worker(concurrency=10)`, the harness's `noop` handler). Each opens its
queue and says READY; when all have, they are told GO together, so process start-up is not
measured. The rate runs from the first handler start in any worker
until the store shows nothing pending or processing (`queue.stats()` polled every
`--poll` seconds, 0.05: a 5 ms poll is itself a noticeable load on 2 cores).

CPU: the workers' own CPU seconds (from /proc/<pid>/stat) over the run, and the whole
machine's busy cores (from /proc/stat) in the same window, so a flat curve can be read as "the
cores are full" rather than "the store serialises".
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from typing import Any

import benchkit
import workerproc

NAME = "aqbench_scale"
logging.getLogger("agentqueue").setLevel(logging.WARNING)


# -- orchestrator -----------------------------------------------------------------------------
async def run_one(store: str, jobs: int, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue `jobs`, drain them with `workers` processes; the result row."""
    await benchkit.reset(store, NAME)
    queue = workerproc.make_queue(store, NAME)
    await queue.open()
    try:
        for first in range(0, jobs, 1000):
            size = min(1000, jobs - first)
            await queue.add_jobs(
                [{"job_type": "noop", "payload": {"i": first + k}} for k in range(size)]
            )
        options = ("--concurrency", str(args.concurrency))
        procs = [await workerproc.Worker.start(store, NAME, *options) for _ in range(workers)]
        cpu_before = [benchkit.cpu_seconds(proc.pid) for proc in procs]
        busy_before = benchkit.machine_busy()
        go = time.time()
        for proc in procs:
            await proc.go()
        left = jobs
        while left and time.time() - go < args.cap:
            await asyncio.sleep(args.poll)
            left = await benchkit.unfinished(queue)
        drained = time.time()
        busy_after = benchkit.machine_busy()
        cpu = sum(benchkit.cpu_seconds(p.pid) - c for p, c in zip(procs, cpu_before, strict=True))
        reports = [await proc.stop() for proc in procs]
    finally:
        await queue.close()
        await benchkit.reset(store, NAME)
    start = min(r["first"] for r in reports if r["first"] is not None)
    seconds = drained - start
    busy, window = busy_after[0] - busy_before[0], max(busy_after[1] - busy_before[1], 1.0)
    done = jobs - left
    return {
        "bench": "scale_out",
        "store": store,
        "workers": workers,
        "concurrency": args.concurrency,
        "jobs": jobs,
        "left": left,
        "seconds": round(seconds, 3),
        "rate": round(done / seconds),
        "per_worker": [r["counts"].get("complete", 0) for r in reports],
        "worker_cpu_cores": round(cpu / (drained - go), 2),
        "worker_cpu_ms_per_job": round(cpu / max(done, 1) * 1000, 3),
        "machine_busy_cores": round(busy / window * (os.cpu_count() or 1), 2),
        "version": benchkit.source_id(),
        "machine": benchkit.machine(),
    }


def report(rows: list[dict[str, Any]]) -> str:
    """Rates, the speed-up over one worker of the same store and run, and the CPU used."""
    one = {r["store"]: r["rate"] for r in rows if r["workers"] == 1}
    table = [
        [
            r["store"],
            r["workers"],
            r["rate"],
            f"{r['rate'] / one[r['store']]:.2f}x" if r["store"] in one else "n/a",
            r["worker_cpu_cores"],
            r["worker_cpu_ms_per_job"],
            r["machine_busy_cores"],
            " / ".join(f"{n:,}" for n in r["per_worker"]),
            r["left"],
        ]
        for r in rows
    ]
    headers = ["store", "workers", "jobs/s", "vs 1 worker", "workers' CPU (cores)", "CPU ms/job"]
    headers += ["machine busy (of 2 cores)", "jobs per worker", "left"]
    return benchkit.markdown_table(headers, table)


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--store", default="all", help="postgres, redis, sqlite or all (postgres and redis)"
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=benchkit.ints_arg, default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=10, help="slots per worker")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between store polls")
    parser.add_argument("--cap", type=float, default=120.0, help="longest drain (seconds)")
    return parser.parse_args()


async def main() -> None:
    """Every store x worker count, then the table and the results file."""
    args = parse_args()
    rows = []
    for store in benchkit.stores_arg(args.store, benchkit.STORES, ("postgres", "redis")):
        for workers in args.workers:
            row = await run_one(store, args.jobs, workers, args)
            print(f"  {store} x{workers}: {row['rate']:,} jobs/s", flush=True)
            rows.append(row)
    print()
    print(report(rows))
    print(f"\nresults: {benchkit.write_results('scale_out', rows)}")


if __name__ == "__main__":
    asyncio.run(main())
