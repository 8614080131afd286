"""The doors benchmark (issue 10, "Doors"): REST `POST /api/v1/jobs` against a bare FastAPI
route, and MCP `add_job` latency over streamable HTTP and stdio, on each store.

    .venv/bin/python bench/doors.py                                  # SQLite, 10 s, 10 clients
    .venv/bin/python bench/doors.py --store all --seconds 10 --clients 10
    .venv/bin/python bench/doors.py --store redis --client httpx --client-procs 2
    git archive 9c96335 agentqueue | tar -x -C /tmp/aq-base       # an A/B in one run:
    .venv/bin/python bench/doors.py --store all --baseline-src /tmp/aq-base

Per store (a fresh SQLite file, PostgreSQL schema or Redis prefix):

1. REST, agentqueue: `create_app(Queue(url))` (what `agentqueue serve --no-worker` serves)
   under uvicorn in a subprocess (bench/doors_apps.py). One job is posted first and its answer
   becomes the bare app's template. Then the load generator (bench/doors_load.py, in
   `--client-procs` processes sharing `--clients` kept-alive connections) posts jobs for a
   warm-up and for `--seconds` measured.
2. MCP over streamable HTTP: `--mcp-calls` sequential `add_job` calls on `/mcp` of the same
   server, after `--mcp-warmup` calls (bench/doors_mcp.py).
3. MCP over stdio: the same calls to an `agentqueue mcp --url STORE` subprocess.
4. REST, bare: bench/doors_apps.py's bare app (same uvicorn settings, same answer), same load.

With `--baseline-src DIR`, steps 1-3 run first with the agentqueue package found in DIR (rows
named `baseline`), so a change is measured against its parent in the same run.

During each REST window the CPU of the server, of the load processes, of the store's server
processes (postgres, redis-server) and of everything else on the machine is read from /proc,
so a client-bound or disturbed run shows. Prints markdown tables and appends JSON lines to
bench/results/<UTC stamp>-doors.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from benchkit import pct
from cpu_sampler import HZ, snapshot
from doors_load import body
from doors_mcp import over_http, over_stdio
from doors_stores import STORES, fresh_store

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STORE_PROCESSES = frozenset({"postgres", "redis-server"})


@dataclass
class Server:
    """A server subprocess and its base URL."""

    process: subprocess.Popen[bytes]
    base: str


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server(kind: str, *args: str, src: Path = REPO) -> Iterator[Server]:
    """Run bench/doors_apps.py `kind` on a free port until it accepts connections, with the
    agentqueue sources of `src`; stop it afterwards (its stderr is shown if it dies)."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    command = [sys.executable, str(HERE / "doors_apps.py"), kind, "--port", str(port), *args]
    env = {**os.environ, "PYTHONPATH": str(src)}
    process = subprocess.Popen(command, stdout=log, stderr=log, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{kind} server exited: {log.read().decode()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not start on port {port}")
            time.sleep(0.05)
        yield Server(process, f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def first_answer(base: str) -> dict[str, Any]:
    """Post one job the way the load generator does; return the answer (the bare template)."""
    headers = {"Content-Type": "application/json"}
    answer = httpx.post(f"{base}/api/v1/jobs", content=body(0), headers=headers, timeout=30)
    answer.raise_for_status()
    return answer.json()


def cpu_in_window(
    before: dict[int, tuple[int, int, str]],
    after: dict[int, tuple[int, int, str]],
    server_pid: int,
    load_pids: set[int],
    seconds: float,
) -> dict[str, float]:
    """Cores used between two /proc snapshots: the server, the load processes, the store's
    server processes, kernel threads and everything else (other people's work)."""
    used = {"server": 0, "client": 0, "store": 0, "kernel": 0, "other": 0}
    me = os.getpid()
    for pid, (ppid, ticks, comm) in after.items():
        delta = ticks - before[pid][1] if pid in before else ticks
        if delta <= 0 or pid == me:
            continue
        if pid == server_pid:
            used["server"] += delta
        elif pid in load_pids:
            used["client"] += delta
        elif comm in STORE_PROCESSES:
            used["store"] += delta
        elif ppid == 2 or pid == 2:
            used["kernel"] += delta
        else:
            used["other"] += delta
    return {f"cores_{name}": round(ticks / HZ / seconds, 2) for name, ticks in used.items()}


def measure_rest(target: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Drive `target` with the load processes; its rate, latency and who used the CPU."""
    start_at = time.time() + args.warmup
    shares = [args.clients // args.client_procs] * args.client_procs
    shares[0] += args.clients - sum(shares)
    loads = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "doors_load.py"),
                target.base,
                f"--clients={share}",
                f"--client={args.client}",
                f"--start-at={start_at}",
                f"--seconds={args.seconds}",
            ],
            stdout=subprocess.PIPE,
        )
        for share in shares
    ]
    time.sleep(max(0.0, start_at - time.time()))
    before = snapshot()
    time.sleep(args.seconds)
    after = snapshot()
    results = [json.loads(load.communicate(timeout=60 + args.seconds)[0]) for load in loads]
    latencies = [ms for result in results for ms in result["latencies_ms"]]
    requests = sum(result["requests"] for result in results)
    cpu = cpu_in_window(before, after, target.process.pid, {p.pid for p in loads}, args.seconds)
    return {
        "requests": requests,
        "errors": sum(result["errors"] for result in results),
        "rps": round(requests / args.seconds, 1),
        "p50_ms": round(pct(latencies, 50), 2) if latencies else None,
        "p99_ms": round(pct(latencies, 99), 2) if latencies else None,
        "clients": args.clients,
        "client_procs": args.client_procs,
        "client": args.client,
        "seconds": args.seconds,
        # The server's CPU per answered request: steadier than the rate on a shared machine.
        "server_cpu_ms": round(cpu["cores_server"] * 1000 / max(requests / args.seconds, 1e-9), 2),
        **cpu,
    }


def latency_row(latencies: list[float]) -> dict[str, Any]:
    """p50 / p99 of sequential calls."""
    return {
        "calls": len(latencies),
        "p50_ms": round(pct(latencies, 50), 2),
        "p99_ms": round(pct(latencies, 99), 2),
    }


def measure_agentqueue(
    kind: str, args: argparse.Namespace, app: str, src: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """REST, MCP over HTTP and MCP over stdio with the agentqueue sources of `src`, on a fresh
    store; the rows (named `app`) and the first POST's answer."""
    rows: list[dict[str, Any]] = []
    with fresh_store(kind) as url:
        with server("agentqueue", "--url", url, src=src) as aq:
            template = first_answer(aq.base)
            rows.append({"door": "rest", "app": app, **measure_rest(aq, args)})
            if args.mcp_calls:
                http = asyncio.run(over_http(aq.base, args.mcp_calls, args.mcp_warmup))
                rows.append({"door": "mcp-http", "app": app, **latency_row(http)})
        if args.mcp_calls:
            stdio = asyncio.run(over_stdio(url, args.mcp_calls, args.mcp_warmup, src=src))
            rows.append({"door": "mcp-stdio", "app": app, **latency_row(stdio)})
    return rows, template


def bench_store(kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every measurement of one store, as result rows."""
    rows: list[dict[str, Any]] = []
    if args.baseline_src is not None:
        # The same measurements with other agentqueue sources, for an A/B in one run.
        rows += measure_agentqueue(kind, args, "baseline", args.baseline_src)[0]
    current, template = measure_agentqueue(kind, args, "agentqueue", REPO)
    rows += current
    with tempfile.NamedTemporaryFile("w", suffix=".json") as saved:
        json.dump(template, saved)
        saved.flush()
        with server("bare", "--template", saved.name) as bare:
            rows.append({"door": "rest", "app": "bare", **measure_rest(bare, args)})
    return [{"store": kind, **row} for row in rows]


def git_commit() -> str:
    """The checkout's commit, `+dirty` when its tracked files differ from it."""

    def git(*command: str) -> str:
        return subprocess.run(
            ["git", *command], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "agentqueue")
    return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")


def cell(value: Any, digits: int = 1) -> str:
    """A table cell: numbers with thousands separators."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_tables(rows: list[dict[str, Any]]) -> None:
    """The REST table with the ratio to bare FastAPI, then the MCP latencies."""
    print(
        "| store | app | requests/s | p50 ms | p99 ms | errors | server CPU ms/request "
        "| server cores | client cores | store cores | other cores |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        if row["door"] != "rest":
            continue
        print(
            f"| {row['store']} | {row['app']} | {cell(row['rps'], 0)} | {cell(row['p50_ms'], 2)}"
            f" | {cell(row['p99_ms'], 2)} | {row['errors']} | {cell(row['server_cpu_ms'], 2)}"
            f" | {cell(row['cores_server'], 2)}"
            f" | {cell(row['cores_client'], 2)} | {cell(row['cores_store'], 2)}"
            f" | {cell(row['cores_other'], 2)} |"
        )
    print()
    print("| store | agentqueue / bare requests/s | baseline / bare |")
    print("|---|---:|---:|")
    for row in rows:
        if row["door"] == "ratio":
            baseline = row.get("baseline_ratio")
            shown = "n/a" if baseline is None else f"{baseline:.2f}x"
            print(f"| {row['store']} | **{row['ratio']:.2f}x** | {shown} |")
    mcp = [row for row in rows if row["door"].startswith("mcp")]
    if mcp:
        print()
        print("| store | MCP transport | app | calls | p50 ms | p99 ms |")
        print("|---|---|---|---:|---:|---:|")
        for row in mcp:
            transport = row["door"].removeprefix("mcp-")
            print(
                f"| {row['store']} | {transport} | {row['app']} | {row['calls']}"
                f" | {cell(row['p50_ms'], 2)}"
                f" | {cell(row['p99_ms'], 2)} |"
            )


def ratio_row(store: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """agentqueue's REST rate over the bare app's, same run."""
    rates = {row["app"]: row["rps"] for row in rows if row["door"] == "rest"}
    bare = rates.get("bare") or float("nan")
    ratio: dict[str, Any] = {"store": store, "door": "ratio"}
    ratio["ratio"] = round(rates["agentqueue"] / bare, 3)
    if "baseline" in rates:
        ratio["baseline_ratio"] = round(rates["baseline"] / bare, 3)
    return ratio


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=[*STORES, "all"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured REST window")
    parser.add_argument("--warmup", type=float, default=2.0, help="REST warm-up seconds")
    parser.add_argument("--clients", type=int, default=10, help="concurrent REST connections")
    parser.add_argument("--client-procs", type=int, default=1, help="load processes")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--mcp-calls", type=int, default=500, help="0: skip MCP")
    parser.add_argument("--mcp-warmup", type=int, default=50)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also measure REST with the agentqueue package of this source tree (e.g. a "
        "`git archive` of an older commit), in the same run",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.client_procs <= args.clients:
        parser.error("--client-procs must be between 1 and --clients")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark on the chosen stores; print the tables; append the JSON lines."""
    args = parse_args(argv)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    run = {"run": stamp, "commit": git_commit(), "loadavg_start": os.getloadavg()[0]}
    if args.baseline_src is not None:
        run["baseline_src"] = str(args.baseline_src)
    rows: list[dict[str, Any]] = []
    for kind in STORES if args.store == "all" else (args.store,):
        store_rows = bench_store(kind, args)
        rows += [*store_rows, ratio_row(kind, store_rows)]
    run["loadavg_end"] = os.getloadavg()[0]
    print(
        f"doors benchmark {stamp}, agentqueue {run['commit']}, load average "
        f"{run['loadavg_start']:.2f} → {run['loadavg_end']:.2f}\n"
    )
    print_tables(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{stamp}-doors.jsonl"
    with path.open("a") as out:
        for row in rows:
            out.write(json.dumps({**run, **row}) + "\n")
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
