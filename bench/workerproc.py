"""A worker in its own process for the benchmarks (scale_out.py, memory.py), and the handle
that starts and stops it.

The process (`python bench/workerproc.py --store S --name N`) opens the queue with the `noop`
handler of the peer harness, builds `queue.worker(concurrency=...)`, prints `READY`, waits for
`GO` on stdin, then runs until SIGTERM. With `--progress SECONDS` it prints
`{"done": <completed jobs>}` that often; with `--tracemalloc N,M` it also traces allocations and
writes the biggest growths between the snapshots taken at those counts to stderr. At the end it
prints `{"first": <first handler start, epoch s>, "counts": {...}}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import tracemalloc
from typing import Any

import benchkit

from agentqueue import Queue

logging.getLogger("agentqueue").setLevel(logging.WARNING)


def make_queue(store: str, name: str, on_start: Any = None) -> Queue:
    """The bench queue with the no-op handler (calls `on_start()` when given)."""
    queue = Queue(benchkit.url(store, name))

    @queue.handler("noop")
    async def noop(payload: dict, ctx: Any) -> None:
        """Records when the first job started; nothing else."""
        if on_start is not None:
            on_start()

    return queue


class Worker:
    """The orchestrator's handle on one worker process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid

    @classmethod
    async def start(cls, store: str, name: str, *options: str) -> Worker:
        """Start the process and wait until it is READY."""
        pipe = asyncio.subprocess.PIPE
        command = [sys.executable, __file__, "--store", store, "--name", name, *options]
        proc = await asyncio.create_subprocess_exec(*command, stdin=pipe, stdout=pipe)
        line = await cls(proc).line()
        if line != "READY":
            raise RuntimeError(f"worker did not start: {line!r}")
        return cls(proc)

    async def line(self) -> str:
        """The next line the process printed ('' once it ended)."""
        assert self.proc.stdout is not None
        return (await self.proc.stdout.readline()).decode().strip()

    async def go(self) -> None:
        """Let the worker run."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"GO\n")
        await self.proc.stdin.drain()

    async def stop(self) -> dict[str, Any]:
        """SIGTERM (a graceful stop); return its final report."""
        self.proc.terminate()
        out, _ = await asyncio.wait_for(self.proc.communicate(), 30)
        return json.loads(out.decode().strip().splitlines()[-1])


# -- the process ------------------------------------------------------------------------------
async def progress(worker: Any, every: float, marks: list[int]) -> None:
    """Print the completed count every `every` seconds; snapshot allocations at `marks`."""
    snapshots: list[tuple[int, tracemalloc.Snapshot]] = []
    while True:
        await asyncio.sleep(every)
        done = worker.counts.get("complete", 0)
        print(json.dumps({"done": done}), flush=True)
        while marks and done >= marks[0]:
            snapshots.append((marks.pop(0), tracemalloc.take_snapshot()))
            if len(snapshots) >= 2:
                (a, older), (b, newer) = snapshots[-2], snapshots[-1]
                print(f"tracemalloc {a} -> {b} jobs, biggest growths:", file=sys.stderr)
                for stat in newer.compare_to(older, "lineno")[:15]:
                    print(f"  {stat}", file=sys.stderr)


async def serve(args: argparse.Namespace) -> None:
    """The worker process: READY, wait for GO, run until SIGTERM, print what it did."""
    first: list[float] = []

    def started() -> None:
        if not first:
            first.append(time.time())

    marks = benchkit.ints_arg(args.tracemalloc) if args.tracemalloc else []
    if marks:
        tracemalloc.start(10)
    queue = make_queue(args.store, args.name, started)
    await queue.open()
    worker = queue.worker(concurrency=args.concurrency, handle_signals=True)
    print("READY", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # GO
    reporter = (
        asyncio.create_task(progress(worker, args.progress, marks)) if args.progress else None
    )
    counts = await worker.run()
    if reporter is not None:
        reporter.cancel()
    await queue.close()
    print(json.dumps({"first": first[0] if first else None, "counts": dict(counts)}), flush=True)


def parse_args() -> argparse.Namespace:
    """Command line of the worker process."""
    parser = argparse.ArgumentParser(description="a bench worker process")
    parser.add_argument("--store", required=True)
    parser.add_argument("--name", required=True, help="the bench store's name")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--progress", type=float, default=0.0, help="seconds between reports")
    parser.add_argument("--tracemalloc", default="", help="completed counts to snapshot at")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(serve(parse_args()))
