"""Where agentqueue's time goes in each phase of the peer benchmark: counters + timings.

An in-process reproduction of the harness's phases (bench/peers/bench_agentqueue.py) on a
SQLite file with agentqueue's defaults (WAL, synchronous=FULL), instrumented from the outside
(monkeypatching instances; agentqueue itself is not changed):

* thread hops: every `loop.run_in_executor` (writer / reader / other executor), with the time
  from submit to the work starting in the thread ("hop in") and from the work ending to the
  awaiting loop seeing the result ("hop out");
* transactions: every `_run_write` / `_run` (read) call by operation, with wall and thread-CPU
  time; SQL statements by kind (cursor execute events), with wall time; COMMITs (wall time of
  `do_commit` = the WAL fsync with synchronous=FULL); time spent in `BEGIN IMMEDIATE` (waiting
  for another process's write lock);
* CPU: process CPU split into writer thread, reader threads, and the rest (event loop + the
  data_version watcher); /proc/self/io write bytes;
* worker: claim batch sizes, ack (finish) batch sizes;
* latency: per job, enqueue call -> committed -> claim started -> claim returned -> handler
  started, with the worker in a subprocess like the harness.

    .venv/bin/python bench/profile_agentqueue.py                     # all phases, ~1 min
    .venv/bin/python bench/profile_agentqueue.py --phases single --cprofile
    AQB_AGENTQUEUE_SRC=/tmp/agentqueue-src-<commit> .venv/bin/python bench/profile_agentqueue.py

Prints one report per phase (and `--json FILE` writes the numbers).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SNAPSHOT = os.environ.get("AQB_AGENTQUEUE_SRC")
if SNAPSHOT:
    sys.path.insert(0, SNAPSHOT)

from sqlalchemy import event  # noqa: E402

import agentqueue  # noqa: E402
from agentqueue import Queue  # noqa: E402
from agentqueue.states import TERMINAL  # noqa: E402

CONCURRENCY = 10
SCRIPT = str(Path(__file__).resolve())


def proc_io() -> dict[str, int]:
    out = {}
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        k, v = line.split(":")
        out[k.strip()] = int(v)
    return out


def kind_of(sql: str) -> str:
    words = sql.strip().split()
    head = " ".join(words[:1]).upper()
    table = next((w.strip('"') for w in words if w.strip('"').startswith("aq_")), "")
    if head in ("BEGIN", "COMMIT", "PRAGMA"):
        return " ".join(words[:2]).upper()
    return f"{head} {table}".strip()


class Probe:
    """Counters attached to one open Queue (its SQLite backend) and the running loop."""

    def __init__(self, queue: Queue) -> None:
        self._tls = threading.local()
        self.queue = queue
        self.backend = queue.backend
        self.reset()
        self._patch_transactions()
        self._patch_statements()
        self._patch_worker_calls()
        self._patch_thread_hops()

    def _patch_transactions(self) -> None:
        """Time every transaction run in the writer / reader threads."""
        b = self.backend
        orig_write, orig_read = b._run_write, b._run

        def run_write(work: Any, *relaxed: Any) -> Any:
            return self._timed("W", work, orig_write, work, *relaxed)

        def run_read(engine: Any, work: Any) -> Any:
            return self._timed("R", work, orig_read, engine, work)

        b._run_write, b._run = run_write, run_read

    def _patch_statements(self) -> None:
        """Count and time SQL statements (cursor events) and COMMITs (the dialect's do_commit)."""
        engine = self.backend.engine

        @event.listens_for(engine, "before_cursor_execute")
        def before(conn, cursor, statement, parameters, context, executemany):
            if context is not None:
                context._aq_t0 = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def after(conn, cursor, statement, parameters, context, executemany):
            t0 = getattr(context, "_aq_t0", None)
            k = kind_of(statement) + (" (many)" if executemany else "")
            self.stmts[k] += 1
            if t0 is not None:
                dt = time.perf_counter() - t0
                self.stmt_wall[k] += dt
                if k == "BEGIN IMMEDIATE":
                    self.begin_waits.append(dt)
                    self._tls.begin_wait = dt

        dialect = engine.dialect
        orig_commit = dialect.do_commit

        def do_commit(dbapi_conn: Any) -> None:
            t0 = time.perf_counter()
            try:
                orig_commit(dbapi_conn)
            finally:
                dt = time.perf_counter() - t0
                if threading.current_thread().name.startswith("agentqueue-sqlite-writer"):
                    self.commits += 1
                    self.commit_wall += dt
                    self.commit_times.append(dt)
                else:
                    self.read_commits += 1

        dialect.do_commit = do_commit

    def _patch_worker_calls(self) -> None:
        """Record claim and ack (finish) batch sizes, and when each job's claim ran."""
        b = self.backend
        orig_claim, orig_finish = b.claim, b.finish

        async def claim(**kw: Any) -> Any:
            t0 = time.time()
            jobs = await orig_claim(**kw)
            t1 = time.time()
            self.claims.append(len(jobs))
            for job in jobs:
                self.claimed_at[job.id] = (t0, t1)
            return jobs

        async def finish(**kw: Any) -> Any:
            self.finishes.append(len(kw["outcomes"]))
            return await orig_finish(**kw)

        b.claim, b.finish = claim, finish

    def _patch_thread_hops(self) -> None:
        """Count `run_in_executor` calls and time both hops (loop -> thread -> loop)."""
        b = self.backend
        loop = asyncio.get_running_loop()
        orig_rie = loop.run_in_executor

        def rie(executor: Any, func: Any, *args: Any) -> Any:
            kind = (
                "writer"
                if executor is b._writer
                else "reader"
                if executor is b._readers
                else "other"
            )
            t_submit = time.perf_counter()
            box: dict[str, float] = {}

            def wrapped(*a: Any) -> Any:
                box["start"] = time.perf_counter()
                try:
                    return func(*a)
                finally:
                    box["end"] = time.perf_counter()

            fut = orig_rie(executor, wrapped, *args)

            def done(_f: Any) -> None:
                now = time.perf_counter()
                self.hops[kind] += 1
                if "start" in box:
                    self.hop_in[kind].append(box["start"] - t_submit)
                    self.hop_out[kind].append(now - box["end"])

            fut.add_done_callback(done)
            return fut

        loop.run_in_executor = rie

    def _timed(self, rw: str, work: Any, fn: Any, *args: Any) -> Any:
        name = getattr(work, "__qualname__", repr(work)).split(".<locals>")[0]
        name = f"{rw} {name}"
        c0, w0 = time.thread_time(), time.perf_counter()
        self._tls.begin_wait = 0.0
        try:
            return fn(*args)
        finally:
            wall = time.perf_counter() - w0
            if rw == "W":
                self.lock_holds.append(wall - self._tls.begin_wait)
            self.txn[name] += 1
            self.txn_wall[name] += wall
            cpu = time.thread_time() - c0
            self.txn_cpu[name] += cpu
            self.thread_cpu["writer" if rw == "W" else "reader"] += cpu

    def reset(self) -> None:
        self.hops: collections.Counter[str] = collections.Counter()
        self.hop_in: dict[str, list[float]] = collections.defaultdict(list)
        self.hop_out: dict[str, list[float]] = collections.defaultdict(list)
        self.txn: collections.Counter[str] = collections.Counter()
        self.txn_wall: dict[str, float] = collections.defaultdict(float)
        self.txn_cpu: dict[str, float] = collections.defaultdict(float)
        self.thread_cpu: dict[str, float] = collections.defaultdict(float)
        self.stmts: collections.Counter[str] = collections.Counter()
        self.stmt_wall: dict[str, float] = collections.defaultdict(float)
        self.commits = 0
        self.read_commits = 0
        self.commit_wall = 0.0
        self.commit_times: list[float] = []
        self.begin_waits: list[float] = []
        self.lock_holds: list[float] = []
        self.claims: list[int] = []
        self.finishes: list[int] = []
        self.claimed_at: dict[int, tuple[float, float]] = {}
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.io0 = proc_io()

    def report(self, title: str, ops: int, unit: str = "job") -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        cpu = time.process_time() - self.cpu0
        io1 = proc_io()
        us = lambda s: round(1e6 * s / max(ops, 1), 1)  # noqa: E731 - per op, in µs
        med = lambda xs: round(1e6 * statistics.median(xs), 1) if xs else None  # noqa: E731
        r: dict[str, Any] = {
            "phase": title,
            "ops": ops,
            "wall_s": round(wall, 3),
            "rate_per_s": round(ops / wall, 1),
            f"wall_us_per_{unit}": us(wall),
            "cpu_us_per_op": {
                "process": us(cpu),
                "writer_thread": us(self.thread_cpu["writer"]),
                "reader_threads": us(self.thread_cpu["reader"]),
                "loop_and_rest": us(cpu - self.thread_cpu["writer"] - self.thread_cpu["reader"]),
            },
            "thread_hops_per_op": {k: round(v / max(ops, 1), 3) for k, v in self.hops.items()},
            "hop_in_median_us": {k: med(v) for k, v in self.hop_in.items()},
            "hop_out_median_us": {k: med(v) for k, v in self.hop_out.items()},
            "transactions_per_op": {
                k: round(v / max(ops, 1), 3) for k, v in self.txn.most_common()
            },
            "transaction_wall_us_per_op": {k: us(v) for k, v in self.txn_wall.items()},
            "transaction_cpu_us_per_op": {k: us(v) for k, v in self.txn_cpu.items()},
            "writer_busy_pct": round(
                100 * sum(v for k, v in self.txn_wall.items() if k.startswith("W")) / wall, 1
            ),
            "statements_per_op": {
                k: round(v / max(ops, 1), 3) for k, v in self.stmts.most_common()
            },
            "statement_wall_us_per_op": {
                k: us(v) for k, v in sorted(self.stmt_wall.items(), key=lambda kv: -kv[1])
            },
            "write_commits_per_op": round(self.commits / max(ops, 1), 3),
            "read_commits_per_op": round(self.read_commits / max(ops, 1), 3),
            "write_commit_us": dist(self.commit_times),
            "write_commit_wall_us_per_op": us(self.commit_wall),
            "begin_immediate_wait_us": dist(self.begin_waits),
            "write_lock_hold_us": dist(self.lock_holds),
            "write_bytes_per_op": round(
                (io1.get("write_bytes", 0) - self.io0.get("write_bytes", 0)) / max(ops, 1)
            ),
        }
        if self.claims:
            nonzero = [c for c in self.claims if c]
            r["claims"] = {
                "calls": len(self.claims),
                "empty": len(self.claims) - len(nonzero),
                "mean_jobs_per_nonempty_claim": round(statistics.mean(nonzero), 2)
                if nonzero
                else 0,
                "size_histogram": dict(sorted(collections.Counter(self.claims).items())),
            }
        if self.finishes:
            r["acks"] = {
                "flushes": len(self.finishes),
                "mean_outcomes_per_flush": round(statistics.mean(self.finishes), 2),
                "size_histogram": dict(sorted(collections.Counter(self.finishes).items())),
            }
        return r


def dist(xs: list[float]) -> dict[str, float] | None:
    """median / p99 / max of durations, in µs."""
    if not xs:
        return None
    s = sorted(xs)
    at = lambda q: round(1e6 * s[min(len(s) - 1, int(q * (len(s) - 1)))], 1)  # noqa: E731
    return {"n": len(s), "p50": at(0.5), "p99": at(0.99), "max": round(1e6 * s[-1], 1)}


def make_queue(url: str, on_hit: Any = None) -> Queue:
    queue = Queue(url)

    @queue.handler("noop")
    async def noop(payload: dict, ctx: Any) -> None:
        if on_hit is not None:
            on_hit(payload)

    return queue


URL_OPTIONS = ""  # e.g. "synchronous=normal" (what-if runs; agentqueue's default is FULL)
ANALYZE = False  # what-if: run ANALYZE on the database before the drain's worker starts


def fresh_db(path: str) -> str:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
    return "sqlite:///" + os.path.abspath(path) + (f"?{URL_OPTIONS}" if URL_OPTIONS else "")


async def pending(queue: Queue) -> int:
    stats = await queue.stats()
    return sum(n for status, n in stats.totals.items() if status not in TERMINAL)


def print_report(r: dict[str, Any]) -> None:
    print(f"\n=== {r['phase']}: {r['ops']} ops in {r['wall_s']} s = {r['rate_per_s']}/s")
    for k, v in r.items():
        if k in ("phase", "ops", "wall_s", "rate_per_s"):
            continue
        print(f"  {k}: {json.dumps(v)}")


# ------------------------------------------------------------------------------------- phases


async def phase_single(db: str, n: int, prof: cProfile.Profile | None) -> dict[str, Any]:
    q = make_queue(fresh_db(db))
    await q.open()
    p = Probe(q)
    for i in range(50):  # warm caches (compiled statements, pool)
        await q.add_job("noop", {"i": i, "ts": 0.0})
    p.reset()
    if prof:
        prof.enable()
    for i in range(n):
        await q.add_job("noop", {"i": i, "ts": 0.0})
    if prof:
        prof.disable()
    r = p.report("enqueue single (add_job)", n)
    await q.close()
    return r


async def phase_bulk(db: str, n: int, batch: int, prof: cProfile.Profile | None) -> dict[str, Any]:
    q = make_queue(fresh_db(db))
    await q.open()
    p = Probe(q)
    await q.add_jobs([{"job_type": "noop", "payload": {"i": i, "ts": 0.0}} for i in range(batch)])
    p.reset()
    if prof:
        prof.enable()
    done = 0
    while done < n:
        await q.add_jobs(
            [{"job_type": "noop", "payload": {"i": done + j, "ts": 0.0}} for j in range(batch)]
        )
        done += batch
    if prof:
        prof.disable()
    r = p.report(f"enqueue bulk (add_jobs of {batch})", done)
    # where the time goes between the loop (validation) and the writer thread
    await q.close()
    return r


async def phase_drain(db: str, n: int, prof: cProfile.Profile | None) -> dict[str, Any]:
    url = fresh_db(db)
    q0 = make_queue(url)
    for k in range(0, n, 1000):
        await q0.add_jobs(
            [
                {"job_type": "noop", "payload": {"i": i, "ts": 0.0}}
                for i in range(k, min(n, k + 1000))
            ]
        )
    await q0.close()
    if ANALYZE:
        import sqlite3

        con = sqlite3.connect(db)
        con.execute("ANALYZE")
        con.close()
    hits = {"n": 0, "first": None}
    done = asyncio.Event()

    def on_hit(_payload: dict) -> None:
        hits["n"] += 1
        if hits["first"] is None:
            hits["first"] = time.perf_counter()
        if hits["n"] >= n:
            done.set()

    q = make_queue(url, on_hit)
    await q.open()
    p = Probe(q)
    worker = q.worker(concurrency=CONCURRENCY, handle_signals=False)
    if prof:
        prof.enable()
    p.reset()
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(done.wait(), 120)
    while await pending(q):  # noqa: ASYNC110 - polls the store, like the harness
        await asyncio.sleep(0.005)
    if prof:
        prof.disable()
    what = ", after ANALYZE" if ANALYZE else ""
    r = p.report(f"drain (Worker concurrency={CONCURRENCY}, in-process{what})", n)
    worker.request_stop()
    await task
    await q.close()
    return r


async def phase_latency(db: str, seconds: float, rate: float) -> dict[str, Any]:
    url = fresh_db(db)
    q = make_queue(url)
    await q.open()
    total = int(seconds * rate)
    fd, out = tempfile.mkstemp(prefix="aq-lat-", suffix=".json")
    os.close(fd)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        SCRIPT,
        "--role",
        "latency-worker",
        "--db",
        db,
        "--expected",
        str(total),
        "--out",
        out,
        "--url-options",
        URL_OPTIONS,
        stdout=asyncio.subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    while (await proc.stdout.readline()).strip() != b"READY":
        pass
    await asyncio.sleep(1.0)
    p = Probe(q)
    sent: dict[int, tuple[float, float]] = {}
    interval = 1.0 / rate
    t0 = time.perf_counter()
    for k in range(total):
        target = t0 + k * interval
        now = time.perf_counter()
        if target > now:
            await asyncio.sleep(target - now)
        ts = time.time()
        await q.add_job("noop", {"i": k, "ts": ts})
        sent[k] = (ts, time.time())
    client = p.report("latency: enqueuer (200/s)", total)
    await asyncio.wait_for(proc.wait(), 60)
    w = json.loads(Path(out).read_text())  # noqa: ASYNC240 - small local file, phase is over
    os.remove(out)
    parts = collections.defaultdict(list)
    for i_s, (claim0, claim1, hit) in w["jobs"].items():
        ts, committed = sent[int(i_s)]
        parts["1 enqueue call (ts -> add_job returned)"].append(committed - ts)
        parts["2 committed -> claim() started in worker"].append(claim0 - committed)
        parts["3 claim() (probe read + claim write)"].append(claim1 - claim0)
        parts["4 claim returned -> handler started"].append(hit - claim1)
        parts["total (ts -> handler)"].append(hit - ts)

    def pcts(xs: list[float]) -> dict[str, float]:
        s = sorted(xs)
        pick = lambda q: round(1000 * s[min(len(s) - 1, int(q * (len(s) - 1)))], 2)  # noqa: E731
        return {
            "p50_ms": pick(0.5),
            "p90_ms": pick(0.9),
            "p99_ms": pick(0.99),
            "mean_ms": round(1000 * statistics.mean(s), 2),
        }

    await q.close()
    return {
        "phase": f"latency ({rate:g}/s for {seconds:g} s, worker in a subprocess)",
        "breakdown": {k: pcts(v) for k, v in sorted(parts.items())},
        "enqueuer": client,
        "worker": w["probe"],
    }


async def latency_worker(db: str, expected: int, out: str) -> None:
    url = f"sqlite:///{db}" + (f"?{URL_OPTIONS}" if URL_OPTIONS else "")  # db is absolute
    hits: dict[int, float] = {}
    done = asyncio.Event()

    def on_hit(payload: dict) -> None:
        hits[payload["i"]] = time.time()
        if len(hits) >= expected:
            done.set()

    q = make_queue(url, on_hit)
    await q.open()
    p = Probe(q)
    worker = q.worker(concurrency=CONCURRENCY, handle_signals=False)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.2)
    p.reset()
    print("READY", flush=True)
    await asyncio.wait_for(done.wait(), 120)
    while await pending(q):  # noqa: ASYNC110 - polls the store, like the harness
        await asyncio.sleep(0.005)
    r = p.report("latency: worker", expected)
    worker.request_stop()
    await task
    jobs = {}
    # job ids and payload i coincide on a fresh database (ids start at 1, i at 0)
    for job_id, (c0, c1) in p.claimed_at.items():
        i = job_id - 1
        if i in hits:
            jobs[i] = (c0, c1, hits[i])
    Path(out).write_text(json.dumps({"probe": r, "jobs": jobs}))  # noqa: ASYNC240
    await q.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phases", default="single,bulk,drain,latency")
    ap.add_argument("--n-single", type=int, default=3000)
    ap.add_argument("--n-bulk", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--n-drain", type=int, default=20000)
    ap.add_argument("--lat-seconds", type=float, default=5.0)
    ap.add_argument("--lat-rate", type=float, default=200.0)
    ap.add_argument("--cprofile", action="store_true", help="also cProfile the event-loop thread")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--url-options", default="", help="what-if: SQLite URL options, e.g. synchronous=normal"
    )
    ap.add_argument("--analyze", action="store_true", help="what-if: ANALYZE before the drain")
    ap.add_argument("--role", default="main")
    ap.add_argument("--db", default=os.path.join(tempfile.gettempdir(), "aqprof", "agentqueue.db"))
    ap.add_argument("--expected", type=int, default=0)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    a.db = str(Path(a.db).resolve())
    os.makedirs(os.path.dirname(a.db), exist_ok=True)
    global URL_OPTIONS, ANALYZE
    URL_OPTIONS, ANALYZE = a.url_options, a.analyze
    if a.role == "latency-worker":
        asyncio.run(latency_worker(a.db, a.expected, a.out))
        return
    options = f"; URL options {URL_OPTIONS}" if URL_OPTIONS else ""
    analyze = "; ANALYZE before drain" if ANALYZE else ""
    print(f"agentqueue from {os.path.dirname(agentqueue.__file__)}; db {a.db}{options}{analyze}")
    results = []
    for phase in a.phases.split(","):
        prof = cProfile.Profile() if a.cprofile and phase != "latency" else None
        if phase == "single":
            r = asyncio.run(phase_single(a.db, a.n_single, prof))
        elif phase == "bulk":
            r = asyncio.run(phase_bulk(a.db, a.n_bulk, a.batch, prof))
        elif phase == "drain":
            r = asyncio.run(phase_drain(a.db, a.n_drain, prof))
        elif phase == "latency":
            r = asyncio.run(phase_latency(a.db, a.lat_seconds, a.lat_rate))
        else:
            raise SystemExit(f"unknown phase {phase}")
        if phase == "latency":
            print(f"\n=== {r['phase']}")
            for k, v in r["breakdown"].items():
                print(f"  {k}: {json.dumps(v)}")
            print_report(r["enqueuer"])
            print_report(r["worker"])
        else:
            print_report(r)
        if prof:
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
            print("\n  cProfile of the event-loop thread (tottime):")
            print("\n".join("  " + line for line in s.getvalue().splitlines()[6:32]))
        results.append(r)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
