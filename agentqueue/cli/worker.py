"""`agentqueue worker`: run an app's handlers until stopped (or once)."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Annotated

import typer

from agentqueue import logs
from agentqueue.cli.common import UrlOption, make_queue, run, split_list
from agentqueue.errors import InvalidArgument
from agentqueue.worker.worker import parse_queues

LOG_LEVELS = ("debug", "info", "warning", "error")


LogFormatOption = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="text (one line per record) or json (one JSON object per line); "
        "default $AGENTQUEUE_LOG_FORMAT, else text.",
        show_default=False,
    ),
]


def configure_logging(level: str, fmt: str | None = None) -> None:
    """Send log records of `level` and above to stderr, one line (or JSON object) each, with
    the job's id, type and attempt on lines about a job and secrets masked (`agentqueue.logs`).

    Raises:
        InvalidArgument: unknown level or format name.
    """
    name = level.strip().lower()
    if name not in LOG_LEVELS:
        raise InvalidArgument(f"--log-level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    numeric = getattr(logging, name.upper())
    logs.install(numeric, fmt)
    # Alembic announces its plugins at INFO each time the schema is checked on start.
    logging.getLogger("alembic").setLevel(max(numeric, logging.WARNING))


def describe_counts(counts: Counter[str]) -> str:
    """Summarise a worker's outcome counts, e.g. `3 job(s): complete=2 fail=1`."""
    total = sum(counts.values())
    detail = " ".join(f"{kind}={counts[kind]}" for kind in sorted(counts))
    return f"{total} job(s){': ' + detail if detail else ''}"


def worker(
    app_spec: Annotated[
        str,
        typer.Option(
            "--app",
            help="module:attribute of the Queue whose handlers to run, e.g. myapp.jobs:queue.",
            show_default=False,
        ),
    ],
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Jobs run at once (default $AGENTQUEUE_CONCURRENCY, else 10).",
            show_default=False,
        ),
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(
            help="Serve only these queues, each with its own concurrency: ai:2,default:10.",
            show_default=False,
        ),
    ] = None,
    job_types: Annotated[
        list[str] | None,
        typer.Option(
            "--job-types", help="Claim only these job types: a,b (repeatable).", show_default=False
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Claim one batch of due jobs (up to the concurrency), run it, exit."
        ),
    ] = False,
    lease: Annotated[
        float | None,
        typer.Option(
            help="Seconds a claim lasts without a heartbeat (default 30).", show_default=False
        ),
    ] = None,
    shutdown_timeout: Annotated[
        float | None,
        typer.Option(
            "--shutdown-timeout",
            help="Seconds running jobs get to finish after SIGTERM/SIGINT (default 30).",
            show_default=False,
        ),
    ] = None,
    supervise: Annotated[
        bool,
        typer.Option(
            "--supervise/--no-supervise",
            help="Also run the maintenance passes (rescue, resume waits, expire tokens, "
            "retention). Turn off only when `agentqueue supervisor` runs elsewhere.",
        ),
    ] = True,
    log_level: Annotated[
        str, typer.Option("--log-level", help=f"One of {', '.join(LOG_LEVELS)}.")
    ] = "info",
    log_format: LogFormatOption = None,
    url: UrlOption = None,
) -> None:
    """Run the handlers of an app's Queue; SIGTERM or Ctrl-C drains running jobs, then exits.

    Examples:

        agentqueue worker --app myapp.jobs:queue
        agentqueue worker --app myapp.jobs:queue --queues ai:2,default:10 --log-format json
        agentqueue worker --app myapp.jobs:queue --once
    """
    if concurrency is not None and queues is not None:
        raise InvalidArgument("give --concurrency or --queues, not both")
    if concurrency is not None and concurrency < 1:
        raise InvalidArgument(f"--concurrency must be at least 1, not {concurrency}")
    if lease is not None and lease <= 0:
        raise InvalidArgument(f"--lease must be a positive number of seconds, not {lease:g}")
    if shutdown_timeout is not None and shutdown_timeout < 0:
        raise InvalidArgument(f"--shutdown-timeout must not be negative, not {shutdown_timeout:g}")
    lanes = parse_queues(queues) if queues is not None else None
    configure_logging(log_level, log_format)
    queue = make_queue(url, app_spec)
    job_worker = queue.worker(
        concurrency=concurrency,
        queues=lanes,
        job_types=split_list(job_types),
        lease_seconds=lease,
        shutdown_timeout=shutdown_timeout,
        supervise=supervise,
    )

    async def go() -> Counter[str]:
        try:
            return await job_worker.run(once=once)
        finally:
            await queue.close()

    counts = run(go())
    typer.echo(f"worker stopped after {describe_counts(counts)}")
