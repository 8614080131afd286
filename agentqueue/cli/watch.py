"""`agentqueue jobs watch ID`: follow one job live from the store's event feed.

A terminal gets a rich progress bar (status, percent, the handler's message, elapsed time);
`--json` prints each event as one JSON object per line instead, for scripts. Either way the
exit code says how the job ended, so `agentqueue jobs watch 42 && deploy` works.
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from agentqueue.cli.common import UrlOption, opened_queue, run
from agentqueue.errors import JobNotFound
from agentqueue.models import EventType, Job, JobEvent
from agentqueue.states import JobStatus

FAILED_EXIT_CODE = 1
"""The job failed (2 stays the code of user errors)."""
CANCELLED_EXIT_CODE = 3
"""The job was cancelled."""
TIMEOUT_EXIT_CODE = 4
"""`--timeout` passed before the job finished."""
EXIT_CODES = {
    JobStatus.COMPLETED: 0,
    JobStatus.FAILED: FAILED_EXIT_CODE,
    JobStatus.CANCELLED: CANCELLED_EXIT_CODE,
}


class JsonLines:
    """Each event as one JSON object on its own line, flushed at once (a pipe sees it live)."""

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def show(self, event: JobEvent) -> None:
        """Print one event."""
        line = json.dumps(event.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))
        typer.echo(line)


class ProgressBar:
    """A rich progress bar of one job: its status, percent and message, redrawn as events come
    (on a terminal; elsewhere rich prints the final state once)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.progress = Progress(
            SpinnerColumn(finished_text="•"),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[message]}"),
            TimeElapsedColumn(),
            console=Console(highlight=False),
        )
        self.task = TaskID(-1)

    def __enter__(self) -> ProgressBar:
        # The clock starts here, once the store is open and the job known.
        self.task = self.progress.add_task(f"job {self.job_id}", total=100, message="")
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def show(self, event: JobEvent) -> None:
        """Update the bar with one event."""
        changes: dict[str, object] = {
            "description": f"job {self.job_id} {event.job_type} · {event.status.value}"
        }
        if event.type is EventType.PROGRESS:
            changes["completed"] = event.data.get("progress", 0)
            changes["message"] = event.data.get("message") or ""
        elif event.type is EventType.CLAIM:
            changes["completed"] = 0
            changes["message"] = f"attempt {event.data.get('attempt', '')}".strip()
        elif event.status is JobStatus.COMPLETED:
            changes["completed"] = 100
            changes["message"] = ""
        elif event.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            changes["message"] = str(event.data.get("error") or "")
        self.progress.update(self.task, **changes)  # pyright: ignore[reportArgumentType]


def summary(job: Job) -> str:
    """The last line a watch prints: how the job ended (or where it is)."""
    if job.status is JobStatus.COMPLETED:
        return f"job {job.id} completed"
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and job.last_error:
        return f"job {job.id} {job.status.value}: {job.last_error}"
    return f"job {job.id} {job.status.value}"


def watch_job(
    job_id: Annotated[int, typer.Argument(help="The job's id.", show_default=False)],
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0,
            help=f"Give up after this many seconds (exit {TIMEOUT_EXIT_CODE}).",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print each event as one JSON object per line.")
    ] = False,
) -> None:
    """Follow a job live, its history first, until it ends: a progress bar, or JSON lines.

    Exits 0 when the job completed, 1 when it failed, 3 when it was cancelled, 4 when
    --timeout passed first.

    Examples:

        agentqueue jobs watch 42
        agentqueue jobs watch 42 --json | jq -r .type
        agentqueue jobs watch 42 --timeout 600 && echo done
    """
    view = JsonLines() if json_output else ProgressBar(job_id)

    async def go() -> Job | None:
        async with opened_queue(url) as queue:
            if await queue.get_job(job_id) is None:
                raise JobNotFound(job_id)  # before the bar: a user error prints nothing else
            with view:
                try:
                    async with asyncio.timeout(timeout):
                        async for event in queue.subscribe(job_id):
                            view.show(event)
                except TimeoutError:
                    pass
            return await queue.get_job(job_id)

    job = run(go())
    if job is None:  # purged while watched
        typer.echo(f"job {job_id} is gone", err=True)
        raise typer.Exit(FAILED_EXIT_CODE)
    if not json_output:
        typer.echo(summary(job))
    raise typer.Exit(EXIT_CODES.get(job.status, TIMEOUT_EXIT_CODE))
