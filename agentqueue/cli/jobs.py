"""`agentqueue jobs …`: add, list, show, watch, cancel, retry, edit and inspect jobs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agentqueue.cli.common import (
    AppOption,
    JsonOption,
    UrlOption,
    format_time,
    opened_queue,
    parse_json_option,
    parse_time_option,
    print_fields,
    print_json,
    print_table,
    run,
    split_list,
)
from agentqueue.cli.watch import watch_job
from agentqueue.errors import InvalidArgument, JobNotFound
from agentqueue.models import BulkResult, Job, JobEvent, ListOrder, Page, TagMode
from agentqueue.queue import Queue
from agentqueue.states import JobStatus

app = typer.Typer(
    name="jobs",
    help=(
        "Add, list, inspect and change jobs.\n\nExamples:\n\n"
        "    agentqueue jobs list --status failed\n"
        "    agentqueue jobs watch 42\n"
    ),
    no_args_is_help=True,
)

JobId = Annotated[int, typer.Argument(help="The job's id.", show_default=False)]
TagOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", help="A tag; repeat (or comma-separate) for several.", show_default=False
    ),
]

JOB_COLUMNS = ("id", "status", "job_type", "queue", "priority", "attempts", "run_at", "tags")


def job_row(job: Job) -> list[Any]:
    """Return a job's cells for the jobs table (columns `JOB_COLUMNS`)."""
    return [
        job.id,
        job.status.value,
        job.job_type,
        job.queue,
        job.priority,
        f"{job.attempts}/{job.max_attempts}",
        format_time(job.run_at),
        ",".join(job.tags),
    ]


def print_job(job: Job) -> None:
    """Print every field of a job, one per line, most useful first."""
    first = ["id", "status", "job_type", "queue", "priority", "attempts", "max_attempts"]
    first += ["run_at", "tags", "payload", "output", "last_error", "failure_reason"]
    data = job.model_dump()
    history = data.pop("error_history")
    data["tags"] = ", ".join(data["tags"])
    pairs = [(name, data.pop(name)) for name in first]
    pairs += list(data.items())
    print_fields(pairs)
    if history:
        typer.echo("error_history")
    for record in history:
        typer.echo(
            f"  attempt {record['attempt']} at {format_time(record['at'])}: "
            f"{record['reason'].value}: {record['message']}"
        )


async def _require_job(queue: Queue, job_id: int) -> Job:
    job = await queue.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


@app.command("add")
def add_job(
    job_type: Annotated[str, typer.Argument(help="The job type (its handler's name).")],
    payload: Annotated[
        str | None,
        typer.Option(help="The payload as JSON (or @file.json).", show_default=False),
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="Higher runs first (default 0).", show_default=False)
    ] = None,
    delay: Annotated[
        float | None, typer.Option(help="Seconds from now before it may run.", show_default=False)
    ] = None,
    run_at: Annotated[
        str | None,
        typer.Option(
            "--run-at", help="Do not run before this ISO 8601 time (with Z or an offset)."
        ),
    ] = None,
    tag: TagOption = None,
    queue_name: Annotated[
        str | None,
        typer.Option("--queue", help="The queue (default: the handler's, else default)."),
    ] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts before it fails.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="A second add with the same job type and key returns the first id."),
    ] = None,
    idempotency_window: Annotated[
        float | None,
        typer.Option(help="Seconds after which the key may make a new job.", show_default=False),
    ] = None,
    depends_on: Annotated[
        list[int] | None,
        typer.Option(
            "--depends-on",
            help="Run after this job completed; repeat for several.",
            show_default=False,
        ),
    ] = None,
    depends_on_tag: Annotated[
        list[str] | None,
        typer.Option(
            "--depends-on-tag",
            help="Run after the unfinished jobs with this tag completed; repeatable.",
            show_default=False,
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="The job's group (its limits apply).", show_default=False),
    ] = None,
    dead_letter: Annotated[
        str | None,
        typer.Option(
            "--dead-letter",
            help="Job type enqueued if this job fails for good.",
            show_default=False,
        ),
    ] = None,
    app_spec: AppOption = None,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Enqueue a job and print its id.

    Examples:

        agentqueue jobs add send_email --payload '{"to": "a@x.io"}'
        agentqueue jobs add report --payload @report.json --delay 60 --tag nightly
        agentqueue jobs add send_email --json | jq .id
    """
    if delay is not None and run_at is not None:
        raise InvalidArgument("give --delay or --run-at, not both")
    # Only options the user gave are passed, so the handler's defaults apply to the rest.
    given = {
        "priority": priority,
        "delay": delay,
        "run_at": parse_time_option("--run-at", run_at) if run_at is not None else None,
        "tags": split_list(tag),
        "queue": queue_name,
        "max_attempts": max_attempts,
        "timeout": timeout,
        "idempotency_key": idempotency_key,
        "idempotency_window": idempotency_window,
        "depends_on": depends_on or None,
        "depends_on_tags": split_list(depends_on_tag),
        "group": group,
        "dead_letter_job_type": dead_letter,
    }
    options = {name: value for name, value in given.items() if value is not None}
    data = parse_json_option("--payload", payload) if payload is not None else {}

    async def go() -> Job:
        async with opened_queue(url, app_spec) as queue:
            job_id = await queue.add_job(job_type, data, **options)
            return await _require_job(queue, job_id)

    job = run(go())
    if json_output:
        print_json(job.model_dump(mode="json"))
    else:
        typer.echo(job.id)


@app.command("list")
def list_jobs(
    status: Annotated[
        list[JobStatus] | None,
        typer.Option(help="Only jobs in this status; repeat for several.", show_default=False),
    ] = None,
    job_type: Annotated[
        list[str] | None,
        typer.Option(
            "--job-type", help="Only this job type; repeat for several.", show_default=False
        ),
    ] = None,
    queue_name: Annotated[
        list[str] | None,
        typer.Option("--queue", help="Only this queue; repeat for several.", show_default=False),
    ] = None,
    tag: TagOption = None,
    tag_mode: Annotated[
        TagMode, typer.Option("--tag-mode", help="How --tag matches a job's tags.")
    ] = TagMode.ANY,
    limit: Annotated[int, typer.Option(help="Jobs per page (1-1000).")] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="next_cursor of the previous page.", show_default=False)
    ] = None,
    oldest: Annotated[
        bool, typer.Option("--oldest", help="Oldest first (default newest).")
    ] = False,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """List jobs, newest first, one page at a time.

    Examples:

        agentqueue jobs list --status failed
        agentqueue jobs list --job-type send_email --tag vip --limit 10
        agentqueue jobs list --json | jq '.items[].id'
    """

    async def go() -> Page[Job]:
        async with opened_queue(url) as queue:
            return await queue.list_jobs(
                status=status,
                job_type=split_list(job_type),
                queue=split_list(queue_name),
                tags=split_list(tag),
                tag_mode=tag_mode,
                limit=limit,
                cursor=cursor,
                order=ListOrder.OLDEST if oldest else ListOrder.NEWEST,
            )

    page = run(go())
    if json_output:
        print_json(page.model_dump(mode="json"))
        return
    if not page.items:
        typer.echo("no jobs")
    else:
        print_table(JOB_COLUMNS, [job_row(job) for job in page.items])
    if page.next_cursor is not None:
        typer.echo(f"more: --cursor {page.next_cursor}")


@app.command("show")
def show_job(job_id: JobId, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Show everything about one job.

    Examples:

        agentqueue jobs show 42
        agentqueue jobs show 42 --json | jq .output
    """

    async def go() -> Job:
        async with opened_queue(url) as queue:
            return await _require_job(queue, job_id)

    job = run(go())
    if json_output:
        print_json(job.model_dump(mode="json"))
    else:
        print_job(job)


app.command("watch")(watch_job)


@app.command("cancel")
def cancel_job(job_id: JobId, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Cancel a job: a waiting one at once, a running one is asked to stop.

    Examples:

        agentqueue jobs cancel 42
    """

    async def go() -> Job:
        async with opened_queue(url) as queue:
            return await queue.cancel_job(job_id)

    job = run(go())
    if json_output:
        print_json(job.model_dump(mode="json"))
    elif job.status is JobStatus.CANCELLED:
        typer.echo(f"job {job.id} cancelled")
    else:
        typer.echo(f"job {job.id} is {job.status.value}: cancel requested, its handler will stop")


@app.command("retry")
def retry_job(job_id: JobId, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Run a failed or cancelled job again from attempt 1.

    Examples:

        agentqueue jobs retry 42
    """

    async def go() -> Job:
        async with opened_queue(url) as queue:
            return await queue.retry_job(job_id)

    job = run(go())
    if json_output:
        print_json(job.model_dump(mode="json"))
    else:
        typer.echo(f"job {job.id} is {job.status.value} again")


@app.command("events")
def job_events(job_id: JobId, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Show a job's history, oldest first.

    Examples:

        agentqueue jobs events 42
        agentqueue jobs events 42 --json
    """

    async def go() -> list[JobEvent]:
        async with opened_queue(url) as queue:
            return await queue.get_job_events(job_id)

    events = run(go())
    if json_output:
        print_json([event.model_dump(mode="json") for event in events])
        return
    print_table(
        ("id", "at", "event", "status", "data"),
        [(e.id, format_time(e.at), e.type.value, e.status.value, e.data) for e in events],
    )


@app.command("edit")
def edit_job(
    job_id: JobId,
    payload: Annotated[
        str | None,
        typer.Option(help="The new payload as JSON (or @file.json).", show_default=False),
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="The new priority.", show_default=False)
    ] = None,
    run_at: Annotated[
        str | None,
        typer.Option("--run-at", help="The new ISO 8601 time (with Z or an offset)."),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="The new tags (replace the old); repeat for several."),
    ] = None,
    app_spec: AppOption = None,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Change a pending job; fields not given stay as they are.

    Examples:

        agentqueue jobs edit 42 --priority 10
        agentqueue jobs edit 42 --run-at 2030-01-31T09:00:00Z --tag urgent
    """
    changes: dict[str, Any] = {}
    if payload is not None:
        changes["payload"] = parse_json_option("--payload", payload)
    if priority is not None:
        changes["priority"] = priority
    if run_at is not None:
        changes["run_at"] = parse_time_option("--run-at", run_at)
    if tag:
        changes["tags"] = split_list(tag) or []
    if not changes:
        raise InvalidArgument("nothing to change: give --payload, --priority, --run-at or --tag")

    async def go() -> Job:
        async with opened_queue(url, app_spec) as queue:
            return await queue.edit_job(job_id, **changes)

    job = run(go())
    if json_output:
        print_json(job.model_dump(mode="json"))
    else:
        typer.echo(f"job {job.id} updated: {', '.join(sorted(changes))}")


@app.command("purge")
def purge_jobs(
    status: Annotated[
        list[JobStatus] | None,
        typer.Option(
            help="Only finished jobs in this status (completed, failed, cancelled); repeatable.",
            show_default=False,
        ),
    ] = None,
    job_type: Annotated[
        list[str] | None,
        typer.Option("--job-type", help="Only this job type; repeatable.", show_default=False),
    ] = None,
    queue_name: Annotated[
        list[str] | None,
        typer.Option("--queue", help="Only this queue; repeatable.", show_default=False),
    ] = None,
    tag: TagOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count and show matches; delete nothing.")
    ] = False,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete finished jobs (and their history) that match the filters.

    Examples:

        agentqueue jobs purge --status completed --dry-run
        agentqueue jobs purge --status failed --job-type send_email
    """

    async def go() -> BulkResult:
        async with opened_queue(url) as queue:
            return await queue.purge_jobs(
                dry_run=dry_run,
                status=status,
                job_type=split_list(job_type),
                queue=split_list(queue_name),
                tags=split_list(tag),
            )

    result = run(go())
    if json_output:
        print_json(result.model_dump(mode="json"))
        return
    if dry_run:
        typer.echo(f"{result.matched} job(s) would be deleted")
        if result.sample:
            print_table(JOB_COLUMNS, [job_row(job) for job in result.sample])
    else:
        typer.echo(f"deleted {result.changed} of {result.matched} job(s)")
