"""agentqueue, measured by the peer harness (see bench/README.md and the harness's README.md).

Store: AQB_BACKEND = sqlite (default), postgres or redis; anything else prints one JSON line
with an "error" (the harness's report shows it as an ERROR row) and exits 2.

- SQLite: a file `agentqueue.db` in common.SQLITE_DIR, opened with agentqueue's defaults (WAL,
  synchronous=FULL, BEGIN IMMEDIATE writes; the URL carries no options).
- PostgreSQL: common.PG_DSN with `?schema=agentqueue_bench` (stock durability, as the peers).
- Redis: common.REDIS_URL with `?prefix=agentqueue_bench`.

reset() closes the queue, deletes the store's data (file, schema, keys) and reopens (migrates)
a fresh one.

Which code is measured: by default the working tree (the editable install). With
AQB_AGENTQUEUE_SRC=DIR (bench/run_peers.sh sets it when AQB_AQ_REF=<commit> is given: a
`git archive` snapshot of that commit) DIR is put first on sys.path in both the orchestrator and
the worker subprocess, so every phase imports the same code while others keep editing the tree.
`version` carries the commit and a hash of the agentqueue/*.py files imported (`src …`), and
the worker reports the hash it imported (`src` in the drain/latency results): a run whose
hashes differ straddled an edit and must be discarded (run_peers.sh checks this).

Enqueue: the public async API from one asyncio client: `queue.add_job("noop", {"i", "ts"})` per
job; bulk = `queue.add_jobs([...1,000 dicts...])` (one transaction). The client's Queue has the
same handler registered as the worker's (as an application would), so payloads are validated
against the handler's annotation at enqueue time.

Worker: `queue.worker(concurrency=AQB_CONCURRENCY, handle_signals=False).run()` in the worker
subprocess; an `async def` handler calls rec.hit(payload["ts"]). pending() = jobs not in a
terminal status, from `queue.stats().totals`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata as md
import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import common

BACKEND = os.environ.get("AQB_BACKEND", "sqlite")
SUPPORTED = ("sqlite", "postgres", "redis")

if BACKEND not in SUPPORTED:
    # Before importing agentqueue: nothing to connect to, just say why there is no row.
    print(
        json.dumps(
            {
                "peer": f"agentqueue ({BACKEND})",
                "backend": BACKEND,
                "error": f"AQB_BACKEND={BACKEND!r}: this adapter supports only "
                f"{', '.join(SUPPORTED)} so far (bench/peers/bench_agentqueue.py)",
            }
        ),
        flush=True,
    )
    sys.exit(2)

SNAPSHOT = os.environ.get("AQB_AGENTQUEUE_SRC")
if SNAPSHOT:
    sys.path.insert(0, SNAPSHOT)

import agentqueue  # noqa: E402
from agentqueue import Queue  # noqa: E402
from agentqueue.states import TERMINAL  # noqa: E402

logging.getLogger("agentqueue").setLevel(logging.WARNING)

DB = os.path.join(common.SQLITE_DIR, "agentqueue.db")
SCHEMA = "agentqueue_bench"
URL = {
    "sqlite": "sqlite:///" + os.path.abspath(DB),  # sqlite:////abs/path.db: the defaults
    "postgres": f"{common.PG_DSN}?schema={SCHEMA}",
    "redis": f"{common.REDIS_URL}?prefix={SCHEMA}",
}[BACKEND]
DURABILITY = {
    "sqlite": "SQLite WAL, synchronous=FULL (agentqueue default, durable per commit)",
    "postgres": "PostgreSQL stock durability (fsync, synchronous_commit on)",
    "redis": "Redis as the harness runs it (no persistence)",
}[BACKEND]

REC: common.Recorder | None = None


def source_id() -> str:
    """git commit of the tree + a hash of the agentqueue sources as they are now."""
    pkg = Path(agentqueue.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(pkg.rglob("*.py")):
        digest.update(str(path.relative_to(pkg)).encode() + b"\0" + path.read_bytes())
    src = digest.hexdigest()[:8]
    if SNAPSHOT:
        commit = os.environ.get("AQB_AGENTQUEUE_COMMIT", "?")[:7]
        return f"git {commit} snapshot, src {src}"

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(pkg), *args], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = " + local edits" if git("status", "--porcelain", "--", ".") else ""
    return f"git {commit}{dirty}, src {src}"


SOURCE_ID = source_id()


def make_queue() -> Queue:
    """A queue on the bench file with the one no-op handler registered."""
    queue = Queue(URL)

    @queue.handler("noop")
    async def noop(payload: dict, ctx: Any) -> None:
        REC.hit(payload["ts"])  # type: ignore[union-attr]

    return queue


async def remove_store() -> None:
    """Delete every job of the bench store (file, schema or keys)."""
    if BACKEND == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(DB + suffix)
    elif BACKEND == "postgres":
        import asyncpg

        conn = await asyncpg.connect(common.PG_DSN)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        finally:
            await conn.close()
    else:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(common.REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=f"{{{SCHEMA}}}*", count=1000)]
            for start in range(0, len(keys), 1000):
                await client.unlink(*keys[start : start + 1000])
        finally:
            await client.aclose()


class AgentQueueBench:
    name = f"agentqueue ({BACKEND})"
    backend = BACKEND
    version = f"{md.version('agentqueue')} ({SOURCE_ID}; sqlite {sqlite3.sqlite_version})"
    notes = (
        f"{DURABILITY}; public async API: add_job per job, add_jobs per 1,000 (one txn); "
        "Worker(concurrency=10), async handler"
    )

    def __init__(self) -> None:
        self.q: Queue | None = None

    async def _open_fresh(self) -> None:
        if self.q is not None:
            await self.q.close()
        await remove_store()
        self.q = make_queue()
        await self.q.open()  # creates + migrates the schema

    async def setup(self) -> None:
        os.makedirs(common.SQLITE_DIR, exist_ok=True)
        await self._open_fresh()

    async def reset(self) -> None:
        await self._open_fresh()

    async def close(self) -> None:
        if self.q is not None:
            await self.q.close()
            self.q = None

    async def enqueue_one(self, i: int, ts: float) -> None:
        await self.q.add_job("noop", {"i": i, "ts": ts})  # type: ignore[union-attr]

    async def enqueue_bulk(self, items: list[tuple[int, float]]) -> None:
        await self.q.add_jobs(  # type: ignore[union-attr]
            [{"job_type": "noop", "payload": {"i": i, "ts": ts}} for i, ts in items]
        )

    async def pending(self) -> int:
        stats = await self.q.stats()  # type: ignore[union-attr]
        return sum(n for status, n in stats.totals.items() if status not in TERMINAL)

    async def run_worker(self, rec: common.Recorder) -> dict[str, Any]:
        global REC
        REC = rec
        rec.bind_loop()
        self.q = make_queue()
        await self.q.open()
        worker = self.q.worker(concurrency=common.CONCURRENCY, handle_signals=False)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0)  # let run() start (publish job types, start its loop)
        common.ready()
        await rec.wait_async(common.worker_time_cap(rec.mode))
        if rec.done.is_set():
            drained_at, left = await common.wait_drained_async(self.pending)
        else:
            drained_at, left = None, await self.pending()
        worker.request_stop()
        try:
            await asyncio.wait_for(task, 10)
        except BaseException:
            task.cancel()
        counts = dict(worker.counts)
        await self.q.close()
        return {
            "drained_at": drained_at,
            "left": left,
            "extra": {"worker_counts": counts, "src": SOURCE_ID},
        }


if __name__ == "__main__":
    common.main(AgentQueueBench)
