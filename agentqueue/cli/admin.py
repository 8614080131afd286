"""Store-wide commands: `migrate`, `stats` and `job-types`."""

from __future__ import annotations

import typer

from agentqueue.cli.common import JsonOption, UrlOption, opened_queue, print_json, print_table, run
from agentqueue.models import JobTypeInfo, QueueStats
from agentqueue.queue import Queue
from agentqueue.states import JobStatus


def migrate(url: UrlOption = None) -> None:
    """Bring the store's schema up to date; print what was applied."""

    async def go() -> list[str]:
        # migrate=False: Queue.open would migrate silently; here the caller wants the list.
        queue = Queue(url, migrate=False)
        try:
            return await queue.backend.migrate()
        finally:
            await queue.backend.close()

    applied = run(go())
    if not applied:
        typer.echo("up to date")
    for name in applied:
        typer.echo(f"applied {name}")


def stats(url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Count jobs per job type and status."""

    async def go() -> QueueStats:
        async with opened_queue(url) as queue:
            return await queue.stats()

    counts = run(go())
    if json_output:
        print_json(counts.model_dump(mode="json"))
        return
    statuses = list(JobStatus)
    rows: list[list[object]] = [
        [job_type, *(by_status.get(status, 0) for status in statuses)]
        for job_type, by_status in sorted(counts.by_type.items())
    ]
    rows.append(["(all)", *(counts.totals.get(status, 0) for status in statuses)])
    print_table(["job_type", *(status.value for status in statuses)], rows)


def job_types(url: UrlOption = None, json_output: JsonOption = False) -> None:
    """List the job types published in the store by workers: name, queue, description."""

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
