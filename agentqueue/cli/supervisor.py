"""`agentqueue supervisor`: the maintenance loop on its own (or one pass with --once)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from agentqueue.cli.common import JsonOption, UrlOption, opened_queue, print_json, run
from agentqueue.cli.worker import LogFormatOption, configure_logging
from agentqueue.models import MaintenanceReport

KeepOption = Annotated[
    float | None,
    typer.Option(
        min=0,
        help="Days to keep them (0 = forever; default AGENTQUEUE_KEEP_*_DAYS or 7).",
        show_default=False,
    ),
]


def supervisor(
    once: Annotated[bool, typer.Option("--once", help="Do one pass, print it, exit.")] = False,
    interval: Annotated[
        float | None,
        typer.Option(min=0.01, help="Seconds between passes (default 1).", show_default=False),
    ] = None,
    keep_finished: KeepOption = None,
    keep_events: KeepOption = None,
    log_format: LogFormatOption = None,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Rescue expired leases, resume due waits, expire tokens, delete old finished jobs.

    Every `agentqueue worker` already runs this; run it alone when workers run with
    supervise=False, or with --once from cron or a serverless function. Safe to run many.

    Examples:

        agentqueue supervisor --url postgresql://app@db/jobs --log-format json
        agentqueue supervisor --once --json
    """
    settings = {"interval": interval, "keep_finished": keep_finished, "keep_events": keep_events}

    async def one_pass() -> MaintenanceReport:
        async with opened_queue(url) as queue:
            return await queue.supervisor(**settings).run_once()

    async def forever() -> None:
        async with opened_queue(url) as queue:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await queue.supervisor(**settings).run(stop)

    if once:
        report = run(one_pass())
        if json_output:
            print_json(report.model_dump(mode="json"))
        else:
            typer.echo(
                f"rescued {len(report.rescued)}, resumed {len(report.resumed)}, "
                f"expired {len(report.expired_tokens)} token(s), deleted "
                f"{report.deleted_jobs} job(s) and {report.deleted_events} event(s)"
            )
        return
    configure_logging("info", log_format)
    run(forever())
