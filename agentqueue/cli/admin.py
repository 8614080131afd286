"""Store-wide commands: `migrate`, `stats` and `job-types`."""

from __future__ import annotations

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from agentqueue.cli.common import JsonOption, UrlOption, opened_queue, print_json, print_table, run
from agentqueue.models import JobTypeInfo, QueueStats
from agentqueue.queue import Queue
from agentqueue.states import JobStatus


def migrate(url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Bring the store's schema up to date; print what was applied.

    Examples:

        agentqueue migrate --url postgresql://app@db/jobs
        agentqueue migrate --json
    """

    async def go() -> list[str]:
        # migrate=False: Queue.open would migrate silently; here the caller wants the list.
        queue = Queue(url, migrate=False)
        try:
            return await queue.backend.migrate()
        finally:
            await queue.backend.close()

    applied = run(go())
    if json_output:
        print_json({"applied": applied})
        return
    if not applied:
        typer.echo("up to date")
    for name in applied:
        typer.echo(f"applied {name}")


def stats(url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Count jobs per job type and status, as a table (one row per job type, then all).

    Examples:

        agentqueue stats
        agentqueue stats --json | jq .totals.failed
    """

    async def go() -> QueueStats:
        async with opened_queue(url) as queue:
            return await queue.stats()

    counts = run(go())
    if json_output:
        print_json(counts.model_dump(mode="json"))
        return
    console = Console(highlight=False)
    if not console.is_terminal:
        # A pipe or a file has no width: never fold a job type there (scripts split lines).
        longest = max((len(name) for name in counts.by_type), default=0)
        console = Console(highlight=False, width=max(80, longest + 80))
    console.print(stats_table(counts))


STATUS_STYLES = {
    JobStatus.PROCESSING: "yellow",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "dim",
}
"""Colours of the status columns (a terminal only: a pipe gets plain text)."""


def stats_table(counts: QueueStats) -> Table:
    """The `stats` table: a row per job type, a column per status, then the (all) row."""
    # Two spaces between columns: the status columns fit 80 characters with a short job type
    # (a longer one folds on a narrow terminal).
    table = Table(box=box.HORIZONTALS, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("job_type", overflow="fold", min_width=8)
    for status in JobStatus:
        table.add_column(
            status.value,
            justify="right",
            no_wrap=True,
            min_width=len(status.value),
            style=STATUS_STYLES.get(status),
        )
    rows = sorted(counts.by_type.items())
    for index, (job_type, by_status) in enumerate(rows):
        cells = [str(by_status.get(status, 0)) for status in JobStatus]
        table.add_row(job_type, *cells, end_section=index == len(rows) - 1)
    totals = [str(counts.totals.get(status, 0)) for status in JobStatus]
    table.add_row("(all)", *totals, style="bold")
    return table


def job_types(url: UrlOption = None, json_output: JsonOption = False) -> None:
    """List the job types published in the store by workers: name, queue, description.

    Examples:

        agentqueue job-types
        agentqueue job-types --json | jq -r '.[].name'
    """

    async def go() -> list[JobTypeInfo]:
        async with opened_queue(url) as queue:
            return await queue.list_job_types()

    infos = run(go())
    if json_output:
        print_json([info.model_dump(mode="json") for info in infos])
    elif not infos:
        typer.echo("no job types (a worker publishes its handlers when it starts)")
    else:
        print_table(
            ("name", "queue", "description"),
            [(info.name, info.queue, info.description) for info in infos],
        )
