"""`agentqueue demo`: a worker and a stream of demo jobs, with every event printed live."""

from __future__ import annotations

from typing import Annotated

import typer

from agentqueue.cli.common import UrlOption, run


def demo(
    url: UrlOption = None,
    rounds: Annotated[
        int | None,
        typer.Option("--rounds", min=1, help="Stop after this many rounds of demo jobs."),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between rounds.")
    ] = 3.0,
) -> None:
    """Run a worker, enqueue demo jobs every few seconds, print each job event (Ctrl+C stops).

    Examples:

        agentqueue demo
        agentqueue demo --rounds 2 --interval 1
    """
    from agentqueue import demo as demo_app

    if url is not None:
        demo_app.queue.use_url(url)
    run(demo_app.run_demo(rounds=rounds, interval=interval))
