"""Where a REST add spends its CPU: `POST /api/v1/jobs` driven in-process, parts taken out.

    .venv/bin/python bench/doors_inproc.py --store all --requests 1500 --reps 3

The app (`create_app(Queue(url))`, as bench/doors_apps.py builds it) is called over ASGI,
with no sockets and no uvicorn, by `--clients` concurrent callers posting the load
generator's body. Each variant runs in a fresh process, and the variants take turns `--reps`
times on a fresh store. The table gives each variant's median CPU time per request
(`time.process_time`, so the store's threads count and other people's work does not):

* `full`: the app as served.
* `api-only`: the store's add (and any read of the job) answer from memory: the API layer
  alone (FastAPI, middlewares, key check, audit note, serialisation).
* `bare`: bench/doors_apps.py's bare FastAPI route (the floor).

The stand-ins are for measuring only; nothing here is a test. Appends JSON lines to
bench/results/<UTC stamp>-doors-inproc.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import STORES, markdown_table, write_results
from doors_load import PATH, body
from doors_stores import fresh_store

HERE = Path(__file__).resolve().parent
VARIANTS = ("full", "api-only", "bare")


def scope_of(payload: bytes) -> dict[str, Any]:
    """The ASGI scope of one `POST /api/v1/jobs` from loopback."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def post(app: Any, n: int) -> dict[str, Any]:
    """Post the n-th body to `app`; return the answer's JSON."""
    payload = body(n)
    pending = [{"type": "http.request", "body": payload, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.Event().wait()  # the body is read once; a disconnect never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope_of(payload), receive, send)
    if sent[0]["status"] not in (200, 201):
        raise RuntimeError(f"answered {sent[0]['status']}: {sent[1].get('body', b'')[:300]!r}")
    return json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def stand_in(template: dict[str, Any]) -> None:
    """Replace the store's add and read of a job with answers from memory (`api-only`)."""
    from agentqueue.enqueue import JobId
    from agentqueue.models import Job
    from agentqueue.queue import Queue

    job = Job.model_validate(template["job"])
    ids = itertools.count(int(template["id"]) + 1_000_000)

    async def get_job(self: Queue, job_id: int) -> Job:
        return job.model_copy(update={"id": job_id})

    async def add_jobs(self: Queue, jobs: Any, **options: Any) -> list[JobId]:
        added = [JobId(next(ids), True)]
        if options.get("audit") is not None:
            options["audit"](added)  # the store would write the record with the job
        return added

    async def add_jobs_returning(self: Queue, jobs: Any, **options: Any) -> list[Any]:
        return [
            (job_id, await get_job(self, job_id))
            for job_id in await add_jobs(self, jobs, **options)
        ]

    # Sources from before `add_jobs_returning` (AQB_AGENTQUEUE_SRC) read the job back instead.
    Queue.get_job = get_job  # type: ignore[method-assign]
    Queue.add_jobs = add_jobs  # type: ignore[method-assign]
    Queue.add_jobs_returning = add_jobs_returning  # type: ignore[method-assign]


async def measure(args: argparse.Namespace, template: dict[str, Any]) -> dict[str, Any]:
    """One variant in this process: CPU ms per request over `--requests` posts."""
    from doors_apps import agentqueue_app, bare_app

    if args.variant == "bare":
        app = bare_app(template)
    else:
        if args.variant != "full":
            stand_in(template)
        app = agentqueue_app(args.url)
    counter = itertools.count()

    async def caller(requests: int) -> None:
        for _ in range(requests):
            await post(app, next(counter))

    async with app.router.lifespan_context(app):
        await asyncio.gather(*(caller(20) for _ in range(args.clients)))  # warm-up
        started, cpu = time.perf_counter(), time.process_time()
        share = args.requests // args.clients
        await asyncio.gather(*(caller(share) for _ in range(args.clients)))
        wall, used = time.perf_counter() - started, time.process_time() - cpu
    requests = share * args.clients
    return {"cpu_ms": round(used * 1000 / requests, 3), "rps": round(requests / wall, 1)}


def first_answer(url: str) -> dict[str, Any]:
    """A real answer of the store, the template of the stand-ins and of the bare route."""
    from doors_apps import agentqueue_app

    async def one() -> dict[str, Any]:
        app = agentqueue_app(url)
        # The MCP SDK configures a rich log handler on import; keep stderr plain and quiet.
        logging.basicConfig(level=logging.WARNING, force=True)
        async with app.router.lifespan_context(app):
            return await post(app, 0)

    return asyncio.run(one())


def run_variant(variant: str, url: str, template: Path, args: argparse.Namespace) -> dict:
    """Measure one variant in a fresh process."""
    command = [
        *(sys.executable, __file__, "--one", variant, "--url", url, "--template", str(template)),
        *("--requests", str(args.requests), "--clients", str(args.clients)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_store(kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every variant on one fresh store, in turns; one row per variant (medians)."""
    with fresh_store(kind) as url, tempfile.NamedTemporaryFile("w", suffix=".json") as saved:
        json.dump(first_answer(url), saved)
        saved.flush()
        runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in args.variants}
        for _ in range(args.reps):
            for variant in args.variants:
                runs[variant].append(run_variant(variant, url, Path(saved.name), args))
    return [
        {
            "store": kind,
            "variant": variant,
            "cpu_ms": statistics.median(r["cpu_ms"] for r in measured),
            "cpu_ms_runs": [r["cpu_ms"] for r in measured],
            "rps": statistics.median(r["rps"] for r in measured),
            "requests": args.requests,
            "clients": args.clients,
        }
        for variant, measured in runs.items()
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (`--one` is the per-variant child's)."""
    parser = argparse.ArgumentParser(description="Where a REST add spends its CPU, in-process.")
    parser.add_argument("--store", choices=[*STORES, "all"], default="sqlite")
    parser.add_argument("--requests", type=int, default=1500, help="measured posts per run")
    parser.add_argument("--clients", type=int, default=10, help="concurrent callers")
    parser.add_argument("--reps", type=int, default=3, help="turns of every variant")
    parser.add_argument(
        "--variants", type=lambda v: v.split(","), default=list(VARIANTS), help="comma list"
    )
    parser.add_argument("--one", dest="variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--template", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Measure every variant on the chosen stores; print the table; append the JSON lines."""
    args = parse_args(argv)
    if args.variant is not None:
        template = json.loads(Path(args.template).read_text())
        print(json.dumps(asyncio.run(measure(args, template))))
        return
    rows: list[dict[str, Any]] = []
    for kind in STORES if args.store == "all" else (args.store,):
        rows += bench_store(kind, args)
    full = {row["store"]: row["cpu_ms"] for row in rows if row["variant"] == "full"}
    print(
        markdown_table(
            ["store", "variant", "CPU ms/request (median)", "share of full", "runs", "req/s"],
            [
                [
                    row["store"],
                    row["variant"],
                    f"{row['cpu_ms']:.3f}",
                    f"{row['cpu_ms'] / full[row['store']]:.0%}" if row["store"] in full else "",
                    " ".join(f"{ms:.2f}" for ms in row["cpu_ms_runs"]),
                    f"{row['rps']:,.0f}",
                ]
                for row in rows
            ],
        )
    )
    print(f"\nresults: {write_results('doors-inproc', rows)}")


if __name__ == "__main__":
    main()
