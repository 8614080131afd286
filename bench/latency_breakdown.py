"""Where the enqueue -> handler-start latency goes on the Redis and PostgreSQL stores.

The harness's latency phase, reproduced and split into stages: an idle worker in a subprocess,
jobs enqueued one at a time at a fixed rate from this process, every stage stamped with the
wall clock (shared by both processes). Instrumented from the outside, by wrapping methods on
classes and instances; agentqueue itself is not changed.

    .venv/bin/python bench/latency_breakdown.py redis            # 2,000 jobs at 200/s (~15 s)
    .venv/bin/python bench/latency_breakdown.py postgres --jobs 1000
    AQB_AGENTQUEUE_SRC=/tmp/agentqueue-src-<commit> .venv/bin/python \
        bench/latency_breakdown.py redis --plain      # the worker waits, then claims

Stages, per job (medians and p90 over the jobs):

* client: `add_job` entered -> the store call sends (core work: resolve, validate, build args);
  the store call (the write's round trip); store call done -> `add_job` returns;
* worker: the wake-up arrives (Redis: the watcher reads the SPUBLISH message; PostgreSQL: the
  LISTEN callback runs), relative to `add_job` entered; wake-up -> the worker's idle wait
  returns; idle returned -> claim sent; the claim's round trip; claim returned -> handler starts.

A worker stage is matched to a job by the job ids the claim returned, and a wake-up by the last
one before that claim started (jobs are 5 ms apart at 200/s, so each claim is one job's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit  # first: it puts an AQB_AGENTQUEUE_SRC snapshot on sys.path

from agentqueue import Queue
from agentqueue.states import TERMINAL
from agentqueue.worker import worker as worker_module
from agentqueue.worker.worker import Worker

NAME = "agentqueue_breakdown"
URLS = {store: benchkit.url(store, NAME) for store in ("redis", "postgres")}


def stamp_calls(obj: Any, name: str, log: list[tuple[float, float, Any]]) -> None:
    """Wrap the async method `name` of `obj` to log (start, end, result) of each call."""
    original = getattr(obj, name)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        result = await original(*args, **kwargs)
        log.append((start, time.time(), result))
        return result

    setattr(obj, name, wrapped)


def watch_wakeups(store: str, wakes: list[float]) -> None:
    """Log the time each cross-process wake-up arrives in this process."""
    if store == "redis":
        from agentqueue.backends.redis import events

        original = events.ChangeWatcher._read  # pyright: ignore[reportPrivateUsage]

        async def read(self: Any, conn: Any) -> Any:
            reply = await original(self, conn)
            if isinstance(reply, list) and len(reply) == 3 and reply[0] in ("smessage", "message"):
                wakes.append(time.time())  # a watcher message (not a claim's own counter)
            return reply

        events.ChangeWatcher._read = read  # type: ignore[method-assign]
    else:
        import asyncpg

        original_add = asyncpg.Connection.add_listener

        async def add_listener(self: Any, channel: str, callback: Any) -> None:
            def stamped(*args: Any) -> None:
                wakes.append(time.time())
                callback(*args)

            await original_add(self, channel, stamped)

        asyncpg.Connection.add_listener = add_listener  # type: ignore[method-assign]


def make_queue(
    store: str, starts: dict[int, float] | None = None, expected: int = 0
) -> tuple[Queue, asyncio.Event]:
    """The queue with its no-op handler, and an event set once `expected` handlers started."""
    queue = Queue(URLS[store])
    all_started = asyncio.Event()

    @queue.handler("noop")
    async def noop(payload: dict, ctx: Any) -> None:
        if starts is not None:
            starts[ctx.job.id] = time.time()
            if len(starts) >= expected:
                all_started.set()

    return queue, all_started


async def worker_role(store: str, expected: int, out: str, plain: bool) -> None:
    starts: dict[int, float] = {}
    wakes: list[float] = []
    idles: list[tuple[float, float, Any]] = []
    claims: list[tuple[float, float, Any]] = []
    after_change: list[tuple[float, float, Any]] = []
    watch_wakeups(store, wakes)
    stamp_calls(Worker, "_idle", idles)
    if plain and hasattr(worker_module, "ClaimsAfterChange"):
        # The worker's plain path: wait_for_change, then claim (an A/B of claim_after_change).
        worker_module.ClaimsAfterChange = type("Nothing", (), {})  # type: ignore[misc]
    queue, all_started = make_queue(store, starts, expected)
    await queue.open()
    stamp_calls(queue.backend, "claim", claims)
    if hasattr(queue.backend, "claim_after_change"):
        # Its start is when the wait began: only its end (the claim's reply) is a stage.
        stamp_calls(queue.backend, "claim_after_change", after_change)
    worker = queue.worker(concurrency=10, handle_signals=False)
    task = asyncio.create_task(worker.run())
    print("READY", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_started.wait(), 60)
    worker.request_stop()
    await asyncio.wait_for(task, 10)
    await queue.close()
    claimed = [
        (start, end, [job.id for job in jobs], kind)
        for kind, log in ((False, claims), (True, after_change))
        for start, end, jobs in log
        if jobs
    ]
    stages = {"starts": starts, "wakes": wakes, "idles": [i[:2] for i in idles], "claims": claimed}
    await asyncio.to_thread(Path(out).write_text, json.dumps(stages))


def first_after(times: list[float], t: float) -> float | None:
    return next((value for value in times if value >= t), None)


def last_before(times: list[float], t: float) -> float | None:
    found = None
    for value in times:
        if value > t:
            break
        found = value
    return found


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", choices=sorted(URLS))
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--json", help="also write the per-stage numbers to this file")
    ap.add_argument(
        "--plain", action="store_true", help="the worker waits, then claims (no claim_after_change)"
    )
    args = ap.parse_args()

    await benchkit.reset(args.store, NAME)
    queue, _ = make_queue(args.store)
    await queue.open()
    sends: list[tuple[float, float, Any]] = []
    stamp_calls(queue.backend, "insert_jobs", sends)
    out = tempfile.mktemp(suffix=".json")
    role = ["--role-worker", args.store, str(args.jobs), out] + (["plain"] if args.plain else [])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, *role, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"READY"
    await asyncio.sleep(2.0)  # idle first, as the harness
    entered: dict[int, tuple[float, float]] = {}
    interval = 1 / args.rate
    t_next = time.perf_counter()
    for i in range(args.jobs):
        t_next += interval
        now = time.perf_counter()
        if t_next > now:
            await asyncio.sleep(t_next - now)
        t0 = time.time()
        job_id = await queue.add_job("noop", {"i": i, "ts": t0})
        entered[job_id] = (t0, time.time())
    await asyncio.wait_for(proc.wait(), 90)
    data = json.loads(await asyncio.to_thread(Path(out).read_text))
    os.unlink(out)
    stats = await queue.stats()
    left = sum(n for status, n in stats.totals.items() if status not in TERMINAL)
    await queue.close()

    starts = {int(k): v for k, v in data["starts"].items()}
    wakes = sorted(data["wakes"])
    idle_ends = sorted(end for _start, end in data["idles"])
    stages: dict[str, list[float]] = {
        name: []
        for name in (
            "total (add_job entered -> handler starts)",
            "client: add_job entered -> store call",
            "client: store call (round trip)",
            "worker: add_job entered -> wake-up message arrives",
            "worker: add_job entered -> claim reply arrives",
            "worker: claim reply -> handler starts",
            "plain: wake-up message -> idle wait returns",
            "plain: idle returned -> claim sent",
            "plain: claim round trip",
        )
    }
    keys = list(stages)
    send_by_start = sorted(sends)
    matched = 0
    for claim_start, claim_end, ids, after_change in data["claims"]:
        if len(ids) != 1 or ids[0] not in entered or ids[0] not in starts:
            continue
        job_id = ids[0]
        t0, t_ret = entered[job_id]
        send = next((s for s in send_by_start if t0 <= s[0] <= t_ret), None)
        wake = first_after(wakes, t0)
        if send is None or wake is None:
            continue
        matched += 1
        values = [
            starts[job_id] - t0,
            send[0] - t0,
            send[1] - send[0],
            wake - t0,
            claim_end - t0,
            starts[job_id] - claim_end,
        ]
        idle_end = last_before(idle_ends, claim_start)
        if not after_change and idle_end is not None and wake <= idle_end:
            values += [idle_end - wake, claim_start - idle_end, claim_end - claim_start]
        for key, value in zip(keys, values, strict=False):
            stages[key].append(value * 1000)
    all_totals = [(starts[j] - entered[j][0]) * 1000 for j in entered if j in starts]
    print(
        f"{args.store}: {len(all_totals)} of {args.jobs} jobs ran, {left} left; "
        f"matched {matched} single-job claims"
    )
    p50, p99 = benchkit.pct(all_totals, 50), benchkit.pct(all_totals, 99)
    print(f"all jobs: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    print(f"{'stage':52} {'p50 ms':>8} {'p90 ms':>8} {'mean':>8}")
    report = {}
    for key, values in stages.items():
        if not values:
            continue
        report[key] = {
            "p50": benchkit.pct(values, 50),
            "p90": benchkit.pct(values, 90),
            "mean": statistics.fmean(values),
        }
        print(
            f"{key:52} {report[key]['p50']:8.3f} {report[key]['p90']:8.3f} "
            f"{report[key]['mean']:8.3f}"
        )
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(report, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--role-worker":
        plain = "plain" in sys.argv[5:]
        asyncio.run(worker_role(sys.argv[2], int(sys.argv[3]), sys.argv[4], plain))
    else:
        asyncio.run(main())
