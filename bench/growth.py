"""Cost growth: enqueue and claim latency with a small and a big store (issue 10).

    .venv/bin/python bench/growth.py                         # all stores, --big 1000000
    .venv/bin/python bench/growth.py --store postgres --big 100000 --calls 200

For each store, in one process with no worker running, two stores side by side: a small one
with `--small` (1,000) jobs pending, and a big one, first with `--big` (1,000,000) pending
("big pending"), then with `--small` pending and the rest completed and retained ("big
completed": the oldest are completed until `--small` are left). Each window measures both
stores interleaved, `--rounds` (10) blocks each with the order alternating, so the shared
machine's changing load falls on both alike, and the ratio big / small compares calls made in
the same minutes.

Seeding (growth_seed.py): pending jobs through `queue.add_jobs` in batches of `--seed-batch`
(5,000); completed jobs on Redis through the store's `claim` + `finish` (1,000 a round), on
SQLite and PostgreSQL as copies of a job the store claimed and completed, written by SQL in one
transaction (then VACUUM on PostgreSQL, as autovacuum would). On PostgreSQL the store's
`refresh_statistics()` runs after each seeding, as a worker's maintenance pass would within 10 s.

In each state (the same calls, the `noop` job type as the peer harness):

* **enqueue**: `--calls` (500) single `queue.add_job` calls, each timed;
* **claim(1)** and **claim(10)**: `--calls` claims of 1 and of 10 jobs (10 = the default
  concurrency, a busy worker's claim), each timed, as the worker calls the store: on SQLite
  `finish_and_claim` carrying the previous batch's COMPLETE outcomes (one transaction, as the
  worker does), elsewhere `backend.claim`, then `backend.finish` (timed as **finish(10)**). The
  claimed jobs are completed and as many new ones enqueued (untimed), so the pending count stays
  the same.

The ratio table divides each big row by the small row of its window (target <= 2x). At each
big state the statements the store ran for one enqueue and one claim + finish are captured
(SQLAlchemy `before_cursor_execute`) and explained on the same data: PostgreSQL
`EXPLAIN (ANALYZE, BUFFERS)` inside a transaction that is rolled back, SQLite
`EXPLAIN QUERY PLAN`. They go to `bench/results/<stamp>-growth-plans.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import Any

import benchkit
import growth_seed as seeding
import query_plans

from agentqueue import Queue
from agentqueue.backends.base import FinishesWithClaim, Outcome, RefreshesStatistics
from agentqueue.models import Job

NAME = "aqbench_growth"
METRICS = ("enqueue", "claim1", "claim10", "finish10")
LABELS = {
    "enqueue": "enqueue",
    "claim1": "claim(1)",
    "claim10": "claim(10)",
    "finish10": "finish(10)",
}
logging.getLogger("agentqueue").setLevel(logging.WARNING)


def make_queue(store: str, name: str) -> Queue:
    """A bench queue with the no-op handler registered (payloads validated at enqueue)."""
    queue = Queue(benchkit.url(store, name))

    @queue.handler("noop")
    async def noop(payload: dict, ctx: Any) -> None:
        """Does nothing: only the store's costs are measured."""

    return queue


async def time_enqueue(queue: Queue, calls: int) -> list[float]:
    """Seconds per single `add_job` call."""
    times = []
    for i in range(calls):
        start = time.perf_counter()
        await queue.add_job("noop", {"i": -i})
        times.append(time.perf_counter() - start)
    return times


async def claim_round(queue: Queue, limit: int, outcomes: list[Outcome]) -> list[Job]:
    """One claim as the worker makes it: on a store that finishes with a claim (SQLite) it
    carries the outcomes still to write; elsewhere `outcomes` must be empty."""
    backend = queue.backend
    if isinstance(backend, FinishesWithClaim) and outcomes:
        _, jobs = await backend.finish_and_claim(
            worker_id=seeding.WORKER,
            outcomes=outcomes,
            queue=None,
            job_types=None,
            limit=limit,
            lease_seconds=seeding.LEASE,
            now=queue.now(),
        )
        return jobs
    return await seeding.claim(queue, limit)


async def finish(queue: Queue, outcomes: list[Outcome]) -> None:
    """Write outcomes with the store's `finish`."""
    await queue.backend.finish(worker_id=seeding.WORKER, outcomes=outcomes, now=queue.now())


async def time_claims(
    queue: Queue, limit: int, calls: int, *, refill: bool = True
) -> tuple[list[float], list[float]]:
    """Seconds per claim (and per separate finish) of `limit` jobs; with `refill` as many
    jobs as were claimed are enqueued again (untimed), so the pending count stays the same."""
    together = isinstance(queue.backend, FinishesWithClaim)
    claims: list[float] = []
    finishes: list[float] = []
    outcomes: list[Outcome] = []
    for _ in range(calls):
        start = time.perf_counter()
        jobs = await claim_round(queue, limit, outcomes)
        claims.append(time.perf_counter() - start)
        outcomes = seeding.completed(jobs)
        if not together:
            start = time.perf_counter()
            await finish(queue, outcomes)
            finishes.append(time.perf_counter() - start)
            outcomes = []
        if refill and jobs:
            await queue.add_jobs([{"job_type": "noop", "payload": {"i": -1}}] * len(jobs))
    if outcomes:
        await finish(queue, outcomes)
    return claims, finishes


async def refresh_statistics(queue: Queue) -> list[str]:
    """What a worker's maintenance pass does on PostgreSQL (nothing elsewhere)."""
    backend = queue.backend
    if not isinstance(backend, RefreshesStatistics):
        return []
    await asyncio.sleep(1.1)  # the row counters reach pg_stat within a second
    return await backend.refresh_statistics()


def dist(times: list[float]) -> dict[str, float | None]:
    """p50/p99 in milliseconds (None when nothing was timed)."""
    if not times:
        return {"p50": None, "p99": None}
    return {
        "p50": benchkit.ms(benchkit.pct(times, 50)),
        "p99": benchkit.ms(benchkit.pct(times, 99)),
    }


async def measure_pair(
    small: Queue, big: Queue, calls: int, rounds: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every timing of the small and the big store, interleaved: `rounds` blocks of
    `calls / rounds` calls per store, the order alternating, so a change in the machine's load
    during the run falls on both alike."""
    raw: dict[int, dict[str, list[float]]] = {id(q): {m: [] for m in METRICS} for q in (small, big)}
    per = max(calls // rounds, 1)
    for number in range(rounds):
        for queue in (small, big) if number % 2 == 0 else (big, small):
            times = raw[id(queue)]
            times["enqueue"] += await time_enqueue(queue, per)
            claims, _ = await time_claims(queue, 1, per)
            times["claim1"] += claims
            claims, finishes = await time_claims(queue, 10, per)
            times["claim10"] += claims
            times["finish10"] += finishes
    small_times, big_times = ({m: dist(v) for m, v in raw[id(q)].items()} for q in (small, big))
    return small_times, big_times


async def plans(queue: Queue, title: str) -> str:
    """The statements of one enqueue and of a worker's claim + finish, with their plans."""
    with query_plans.capture(queue) as enqueue:
        await queue.add_job("noop", {"i": -2})
    if isinstance(queue.backend, FinishesWithClaim):
        with query_plans.capture(queue) as claiming:
            # Two rounds: the second claim carries the first one's outcomes.
            await time_claims(queue, 10, 2, refill=False)
        return await query_plans.section(
            queue, title, {"enqueue": enqueue, "claim(10) with finish": claiming}
        )
    with query_plans.capture(queue) as claiming:
        jobs = await seeding.claim(queue, 10)
    with query_plans.explain_in_place(queue) as finishing:
        await finish(queue, seeding.completed(jobs))
    # Only the first: the store read the plan as "no outcome confirmed" and then ran its
    # follow-up read for lost leases, which a real finish skips.
    return await query_plans.section(
        queue, title, {"enqueue": enqueue, "claim(10)": claiming}, {"finish(10)": finishing[:1]}
    )


# -- the run ----------------------------------------------------------------------------------
async def seed(
    queue: Queue, store: str, name: str, add: int, complete: int, batch: int
) -> dict[str, Any]:
    """Add `add` pending jobs, then complete the `complete` oldest; the rates (jobs/s)."""
    rates: dict[str, Any] = {"seed_rate": None, "complete_rate": None, "complete_path": None}
    if add:
        rates["seed_rate"] = round(await seeding.add_pending(queue, add, batch))
    if complete and store == "redis":
        rates["complete_rate"] = round(await seeding.complete_oldest(queue, complete))
        rates["complete_path"] = "claim+finish"
    elif complete:
        rates["complete_rate"] = round(
            await seeding.complete_oldest_sql(queue, store, name, complete)
        )
        rates["complete_path"] = "sql copy of a completed job"
    return rates


async def open_fresh(store: str, name: str) -> Queue:
    """A new, empty bench store."""
    await benchkit.reset(store, name)
    queue = make_queue(store, name)
    await queue.open()
    return queue


async def run_store(store: str, args: argparse.Namespace, plan_text: list[str]) -> list[dict]:
    """Measure the small store beside the big one, twice: the big one with `--big` pending,
    then with `--small` pending and the rest completed. One result row per store and window."""
    names = (f"{NAME}_small", f"{NAME}_big")
    small, big = [await open_fresh(store, name) for name in names]
    rows: list[dict[str, Any]] = []
    meta = {"bench": "growth", "store": store, "version": benchkit.source_id(), "calls": args.calls}

    async def window(
        states: tuple[str, str], seeded: tuple[dict[str, Any], dict[str, Any]], big_done: int
    ) -> None:
        analyzed = [await refresh_statistics(q) for q in (small, big)]
        timings = await measure_pair(small, big, args.calls, args.rounds)
        shapes = ((args.small, 0), (args.big - big_done, big_done))
        for state, (pending, done), rates, found, tables in zip(
            states, shapes, seeded, timings, analyzed, strict=True
        ):
            rows.append(
                meta
                | {"state": state, "pending": pending, "completed": done, "analyzed": tables}
                | rates
                | found
                | {"machine": benchkit.machine()}
            )
        print(f"  {store} {states[1]}: {seeded[1]} load {benchkit.machine()['load']}", flush=True)

    try:
        seeded = (
            await seed(small, store, names[0], args.small, 0, args.seed_batch),
            await seed(big, store, names[1], args.big, 0, args.seed_batch),
        )
        await window(("small", "big pending"), seeded, 0)
        if store != "redis":
            title = f"{store}, big pending ({args.big:,} pending)"
            plan_text.append(await plans(big, title))
        done = args.big - args.small
        seeded = ({}, await seed(big, store, names[1], 0, done, args.seed_batch))
        await window(("small", "big completed"), seeded, done)
        if store != "redis":
            title = f"{store}, big completed ({args.small:,} pending, {done:,} completed)"
            plan_text.append(await plans(big, title))
    finally:
        for queue, name in zip((small, big), names, strict=True):
            await queue.close()
            if not args.keep:
                await benchkit.reset(store, name)
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    """The latency table and the big/small ratio table."""
    cells = [(m, p) for m in METRICS for p in ("p50", "p99")]

    def show(value: float | None) -> Any:
        return "n/a" if value is None else value

    table = [
        [r["store"], r["state"], r["pending"], r["completed"]] + [show(r[m][p]) for m, p in cells]
        for r in rows
    ]
    ratios = []
    small: dict[str, Any] = {}
    for r in rows:
        if r["state"] == "small":
            small = r
            continue
        line: list[Any] = [r["store"], f"{r['state']} / small"]
        for m, p in cells:
            base, value = small[m][p], r[m][p]
            line.append(f"{value / base:.2f}x" if base and value is not None else "n/a")
        ratios.append(line)
    headers = [f"{LABELS[m]} {p}" for m, p in cells]
    return (
        benchkit.markdown_table(
            ["store", "state", "pending", "completed"] + [f"{h} (ms)" for h in headers], table
        )
        + "\n\n"
        + benchkit.markdown_table(["store", "ratio", *headers], ratios)
    )


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", default="all", help="sqlite, postgres, redis or all")
    parser.add_argument("--big", type=int, default=1_000_000, help="jobs in the big states")
    parser.add_argument("--small", type=int, default=1_000, help="jobs pending in the small state")
    parser.add_argument("--calls", type=int, default=500, help="timed calls per measurement")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved blocks per window")
    parser.add_argument("--seed-batch", type=int, default=5_000, help="jobs per add_jobs call")
    parser.add_argument("--keep", action="store_true", help="keep the store's data afterwards")
    return parser.parse_args()


async def main() -> None:
    """Run every chosen store, print the tables, write the results and the plans."""
    args = parse_args()
    at = benchkit.stamp()
    rows: list[dict[str, Any]] = []
    plan_text: list[str] = []
    path = plan_path = None
    for store in benchkit.stores_arg(args.store):
        found = await run_store(store, args, plan_text)
        rows += found
        # Written per store: a million-job run takes minutes per store.
        path = benchkit.write_results("growth", found, at=at)
        if plan_text:
            plan_path = path.with_name(f"{at}-growth-plans.md")
            plan_path.write_text("\n".join(plan_text))
    print()
    print(report(rows))
    print(f"\nresults: {path}")
    if plan_path is not None:
        print(f"plans: {plan_path}")


if __name__ == "__main__":
    asyncio.run(main())
