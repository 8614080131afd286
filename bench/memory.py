"""Memory: a worker's RSS idle and after 50,000 and 100,000 jobs (issue 10).

    .venv/bin/python bench/memory.py                          # every store, 100,000 jobs
    .venv/bin/python bench/memory.py --store redis --jobs 20000
    .venv/bin/python bench/memory.py --store sqlite --tracemalloc   # where growth comes from

One worker process (workerproc.py, `queue.worker(concurrency=10)`, the `noop` handler) on a
fresh store. Its RSS (VmRSS from /proc/<pid>/status) is sampled idle, `--idle` seconds after it
started; then jobs are enqueued with `queue.add_jobs` (1,000 a call) while it runs, keeping at
most `--backlog` (5,000) unfinished, and the RSS is sampled each time the worker's completed
count passes a tenth of `--jobs` (it reports the count every 0.2 s), and once more after it has
been idle `--idle` seconds at the end. Target: no growth between the half-way and the last
mark (within 5 % or a few MB).

With `--tracemalloc` the worker traces allocations (10 frames) and prints, to stderr, the 15
biggest growths between its snapshots at half-way and at the end. Tracing slows it and adds
its own memory, so RSS figures of such a run are not comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import benchkit
import workerproc

NAME = "aqbench_memory"


async def feed(queue: Any, jobs: int, backlog: int, done: list[int]) -> None:
    """Enqueue `jobs` in batches of 1,000, never more than `backlog` ahead of `done[0]`."""
    sent = 0
    while sent < jobs:
        if sent - done[0] >= backlog:
            await asyncio.sleep(0.05)
            continue
        size = min(1000, jobs - sent)
        await queue.add_jobs(
            [{"job_type": "noop", "payload": {"i": sent + k}} for k in range(size)]
        )
        sent += size


async def run_store(store: str, args: argparse.Namespace) -> dict[str, Any]:
    """Sample one worker's RSS on `store`; the result row."""
    await benchkit.reset(store, NAME)
    queue = workerproc.make_queue(store, NAME)
    await queue.open()
    options = ["--progress", "0.2"]
    if args.tracemalloc:
        options += ["--tracemalloc", f"{args.jobs // 2},{args.jobs}"]
    worker = await workerproc.Worker.start(store, NAME, *options)
    samples: list[dict[str, Any]] = []

    def sample(label: str, done: int) -> None:
        samples.append({"at": label, "done": done, "rss_kib": benchkit.rss_kib(worker.pid)})

    try:
        await worker.go()
        await asyncio.sleep(args.idle)
        sample("idle", 0)
        done = [0]
        feeder = asyncio.create_task(feed(queue, args.jobs, args.backlog, done))
        step = max(args.jobs // 10, 1)
        next_mark = step
        start = time.perf_counter()
        while done[0] < args.jobs:
            line = await worker.line()
            if not line:
                raise RuntimeError("the worker stopped")
            done[0] = json.loads(line)["done"]
            while done[0] >= next_mark and next_mark <= args.jobs:
                sample(f"{next_mark:,} jobs", done[0])
                next_mark += step
        seconds = time.perf_counter() - start
        await feeder
        await asyncio.sleep(args.idle)
        sample("idle after", done[0])
        report = await worker.stop()
    finally:
        await queue.close()
        await benchkit.reset(store, NAME)
    by_label = {s["at"]: s["rss_kib"] for s in samples}
    half, end = (
        by_label[f"{(args.jobs // 2 // step) * step:,} jobs"],
        by_label[f"{args.jobs:,} jobs"],
    )
    return {
        "bench": "memory",
        "store": store,
        "jobs": args.jobs,
        "rate": round(args.jobs / seconds),
        "samples": samples,
        "growth_half_to_end_kib": end - half,
        "growth_half_to_end_pct": round((end - half) / half * 100, 2),
        "counts": report["counts"],
        "tracemalloc": args.tracemalloc,
        "version": benchkit.source_id(),
        "machine": benchkit.machine(),
    }


def report(rows: list[dict[str, Any]], jobs: int) -> str:
    """RSS (MiB) idle, at each quarter of the jobs and idle at the end, one row per store, and
    the half-way -> end growth (every tenth is in the results file)."""
    step = max(jobs // 10, 1)
    marks = sorted({(jobs * q // 4 // step) * step for q in (1, 2, 3, 4)} - {0})
    keep = ["idle", *[f"{mark:,} jobs" for mark in marks], "idle after"]
    table = []
    for r in rows:
        rss = {s["at"]: s["rss_kib"] for s in r["samples"]}
        growth = r["growth_half_to_end_kib"] / 1024
        table.append(
            [r["store"], r["rate"]]
            + [round(rss[label] / 1024, 1) if label in rss else "n/a" for label in keep]
            + [f"{growth:+.1f} MiB ({r['growth_half_to_end_pct']:+.1f}%)"]
        )
    headers = ["store", "jobs/s", *[f"RSS {label} (MiB)" for label in keep], "half -> end"]
    return benchkit.markdown_table(headers, table)


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", default="all", help="sqlite, postgres, redis or all")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--backlog", type=int, default=5_000, help="most jobs unfinished at once")
    parser.add_argument("--idle", type=float, default=2.0, help="idle seconds before a sample")
    parser.add_argument("--tracemalloc", action="store_true", help="trace allocations")
    return parser.parse_args()


async def main() -> None:
    """Every chosen store, then the table and the results file."""
    args = parse_args()
    rows = []
    for store in benchkit.stores_arg(args.store):
        row = await run_store(store, args)
        print(f"  {store}: {row['growth_half_to_end_kib']:+,} KiB half -> end", flush=True)
        rows.append(row)
    print()
    print(report(rows, args.jobs))
    print(f"\nresults: {benchkit.write_results('memory', rows)}")


if __name__ == "__main__":
    asyncio.run(main())
