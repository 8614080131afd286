"""Shared pieces of the in-process benchmarks (growth.py, scale_out.py, memory.py).

Each benchmark names its own store (`name`): a SQLite file in the temp dir, a PostgreSQL
schema, or a Redis key prefix, so it never touches another run's data. `reset` deletes it;
the next `Queue(url).open()` migrates a fresh one.

Results: `write_results` appends JSON lines to `bench/results/<UTC stamp>-<bench>.jsonl`;
`markdown_table` prints the table the docs show. `machine` records what else ran (load).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SNAPSHOT = os.environ.get("AQB_AGENTQUEUE_SRC")
if SNAPSHOT:  # the same `git archive` snapshot switch as the other bench scripts
    sys.path.insert(0, SNAPSHOT)

PG_DSN = os.environ.get("AQB_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AQB_REDIS_URL", "redis://127.0.0.1:6379/0")
SQLITE_DIR = Path(os.environ.get("AQB_SQLITE_DIR", Path(tempfile.gettempdir()) / "aqbench-growth"))
STORES = ("sqlite", "postgres", "redis")
RESULTS = Path(os.environ.get("AQB_RESULTS_DIR", Path(__file__).resolve().parent / "results"))
REPO = Path(__file__).resolve().parent.parent


def stores_arg(
    value: str, allowed: Sequence[str] = STORES, every: Sequence[str] | None = None
) -> list[str]:
    """Parse `--store`: one store, a comma list, or `all` (`every`, default `allowed`)."""
    chosen = list(every or allowed) if value == "all" else value.split(",")
    unknown = [store for store in chosen if store not in allowed]
    if unknown:
        raise SystemExit(f"unknown store {unknown}: use {', '.join(allowed)} or all")
    return chosen


def ints_arg(value: str) -> list[int]:
    """Parse a comma list of integers (`--workers 1,2,4`)."""
    return [int(part) for part in value.split(",") if part]


def sqlite_path(name: str) -> Path:
    """The SQLite file of store `name`."""
    return SQLITE_DIR / f"{name}.db"


def url(store: str, name: str) -> str:
    """The agentqueue URL of store `name` on `store` (agentqueue's defaults otherwise)."""
    if store == "sqlite":
        SQLITE_DIR.mkdir(parents=True, exist_ok=True)
        return "sqlite:///" + str(sqlite_path(name))
    if store == "postgres":
        return f"{PG_DSN}?schema={name}"
    if store == "redis":
        return f"{REDIS_URL}?prefix={name}"
    raise ValueError(store)


async def reset(store: str, name: str) -> None:
    """Delete every job of store `name` (file, schema or keys)."""
    if store == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(str(sqlite_path(name)) + suffix)
    elif store == "postgres":
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()
    else:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{{{name}}}*", count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    await client.unlink(*batch)
                    batch = []
            if batch:
                await client.unlink(*batch)
        finally:
            await client.aclose()


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> float:
    """Seconds to milliseconds, rounded for tables."""
    return round(seconds * 1000, 3)


def source_id() -> str:
    """The commit of the tree measured, with `+ local edits` when agentqueue/ differs."""
    if SNAPSHOT:
        return f"snapshot {os.environ.get('AQB_AGENTQUEUE_COMMIT', SNAPSHOT)[:12]}"

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = " + local edits" if git("status", "--porcelain", "--", "agentqueue") else ""
    return (git("rev-parse", "--short", "HEAD") or "?") + dirty


def machine() -> dict[str, Any]:
    """What the run shared the machine with: load averages and cores."""
    one, five, fifteen = os.getloadavg()
    return {"load": [round(one, 2), round(five, 2), round(fifteen, 2)], "cores": os.cpu_count()}


def stamp() -> str:
    """The UTC time stamp of a results file name."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def write_results(bench: str, rows: Iterable[dict[str, Any]], *, at: str | None = None) -> Path:
    """Append `rows` as JSON lines to `bench/results/<stamp>-<bench>.jsonl`; return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{at or stamp()}-{bench}.jsonl"
    with path.open("a") as out:
        for row in rows:
            out.write(json.dumps(row, default=str) + "\n")
    return path


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; numbers right-aligned, floats with at most 3 decimals."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}".rstrip("0").rstrip(".") if value < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


async def unfinished(queue: Any) -> int:
    """Jobs of `queue` (an open `Queue`) not yet in a terminal status (pending, processing …)."""
    from agentqueue.states import TERMINAL

    stats = await queue.stats()
    return sum(n for status, n in stats.totals.items() if status not in TERMINAL)


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return float(sum(fields) - idle), float(sum(fields))


def rss_kib(pid: int) -> int:
    """Resident set size of process `pid` in KiB (VmRSS in /proc; psutil is not needed)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
