"""`agentqueue cron …`: add, list, show, edit, pause, resume and remove cron schedules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from agentqueue.cli.common import (
    AppOption,
    JsonOption,
    UrlOption,
    format_time,
    opened_queue,
    parse_json_option,
    print_fields,
    print_json,
    print_table,
    run,
    split_list,
)
from agentqueue.errors import CronJobNotFound
from agentqueue.models import CronJob
from agentqueue.queue import Queue

app = typer.Typer(
    name="cron",
    help=(
        "Add, list, show, edit, pause, resume and remove cron schedules.\n\nExamples:\n\n"
        "    agentqueue cron add nightly-report '0 2 * * *' build_report\n"
        "    agentqueue cron list\n"
    ),
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="The schedule's name.", show_default=False)]
Opt = typer.Option


def _print(cron: CronJob, json_output: bool) -> None:
    if json_output:
        print_json(cron.model_dump(mode="json"))
        return
    data = cron.model_dump(mode="json", exclude={"options"})
    data["options"] = cron.options.model_dump(mode="json", exclude_unset=True)
    print_fields(list(data.items()))


def _options(
    priority: int | None,
    max_attempts: int | None,
    timeout: float | None,
    queue: str | None,
    tag: list[str] | None,
) -> dict[str, Any]:
    values = {
        "priority": priority,
        "max_attempts": max_attempts,
        "timeout": timeout,
        "queue": queue,
        "tags": split_list(tag),
    }
    return {name: value for name, value in values.items() if value is not None}


def _act(
    url: str | None, app_spec: str | None, action: Callable[[Queue], Awaitable[CronJob]]
) -> CronJob:
    async def go() -> CronJob:
        async with opened_queue(url, app_spec) as queue:
            return await action(queue)

    return run(go())


PayloadOpt = Annotated[str | None, Opt("--payload", help="JSON payload.", show_default=False)]
TzOpt = Annotated[str | None, Opt("--timezone", help="IANA zone (UTC).", show_default=False)]
PriorityOpt = Annotated[int | None, Opt(help="Job priority.", show_default=False)]
AttemptsOpt = Annotated[int | None, Opt("--max-attempts", help="Attempts.", show_default=False)]
TimeoutOpt = Annotated[float | None, Opt(help="Seconds per attempt.", show_default=False)]
QueueOpt = Annotated[str | None, Opt("--queue", help="Queue of the jobs.", show_default=False)]
TagOpt = Annotated[list[str] | None, Opt("--tag", help="A tag (repeatable).", show_default=False)]


@app.command("add")
def add(
    name: Name,
    expression: Annotated[str, typer.Argument(help="e.g. '0 9 * * MON' or @daily.")],
    job_type: Annotated[str, typer.Argument(help="The job type each tick enqueues.")],
    payload: PayloadOpt = None,
    timezone: TzOpt = None,
    allow_overlap: Annotated[bool, Opt("--allow-overlap", help="Fire while one runs.")] = False,
    priority: PriorityOpt = None,
    max_attempts: AttemptsOpt = None,
    timeout: TimeoutOpt = None,
    queue: QueueOpt = None,
    tag: TagOpt = None,
    app_spec: AppOption = None,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add (or replace) a schedule; prints it with its next tick.

    Examples:

        agentqueue cron add nightly-report '0 2 * * *' build_report --timezone Europe/Paris
        agentqueue cron add heartbeat @hourly ping --payload '{"url": "https://x.io"}'
    """
    body = parse_json_option("--payload", payload) if payload is not None else None
    options = _options(priority, max_attempts, timeout, queue, tag)
    cron = _act(
        url,
        app_spec,
        lambda q: q.add_cron_job(
            name,
            expression,
            job_type,
            body,
            timezone=timezone or "UTC",
            allow_overlap=allow_overlap,
            **options,
        ),
    )
    _print(cron, json_output)


@app.command("list")
def list_schedules(
    status: Annotated[str | None, Opt(help="active or paused.", show_default=False)] = None,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """List schedules by name.

    Examples:

        agentqueue cron list
        agentqueue cron list --status paused --json
    """

    async def go() -> list[CronJob]:
        async with opened_queue(url) as queue:
            return await queue.list_cron_jobs(status)

    crons = run(go())
    if json_output:
        print_json([cron.model_dump(mode="json") for cron in crons])
        return
    print_table(
        ("name", "expression", "timezone", "job_type", "status", "next_run_at", "last_run_at"),
        [
            (
                c.name,
                c.expression,
                c.timezone,
                c.job_type,
                c.status.value,
                format_time(c.next_run_at),
                format_time(c.last_run_at),
            )
            for c in crons
        ],
    )


@app.command("show")
def show(name: Name, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Show one schedule.

    Examples:

        agentqueue cron show nightly-report
    """

    async def get(queue: Queue) -> CronJob:
        cron = await queue.get_cron_job(name)
        if cron is None:
            raise CronJobNotFound(name)
        return cron

    _print(_act(url, None, get), json_output)


@app.command("edit")
def edit(
    name: Name,
    expression: Annotated[str | None, Opt(help="New expression.", show_default=False)] = None,
    payload: PayloadOpt = None,
    timezone: TzOpt = None,
    priority: PriorityOpt = None,
    max_attempts: AttemptsOpt = None,
    timeout: TimeoutOpt = None,
    queue: QueueOpt = None,
    tag: TagOpt = None,
    app_spec: AppOption = None,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Change a schedule; only the options given change.

    Examples:

        agentqueue cron edit nightly-report --expression '30 2 * * *'
    """
    changes: dict[str, Any] = _options(priority, max_attempts, timeout, queue, tag)
    if expression is not None:
        changes["cron_expression"] = expression
    if timezone is not None:
        changes["timezone"] = timezone
    if payload is not None:
        changes["payload"] = parse_json_option("--payload", payload)
    _print(_act(url, app_spec, lambda q: q.edit_cron_job(name, **changes)), json_output)


@app.command("pause")
def pause(name: Name, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Stop a schedule from firing.

    Examples:

        agentqueue cron pause nightly-report
    """
    _print(_act(url, None, lambda q: q.pause_cron_job(name)), json_output)


@app.command("resume")
def resume(name: Name, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Fire again from the next tick after now.

    Examples:

        agentqueue cron resume nightly-report
    """
    _print(_act(url, None, lambda q: q.resume_cron_job(name)), json_output)


@app.command("remove")
def remove(name: Name, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Delete a schedule (the jobs it enqueued stay).

    Examples:

        agentqueue cron remove nightly-report
    """

    async def go() -> None:
        async with opened_queue(url) as queue:
            await queue.remove_cron_job(name)

    run(go())
    if json_output:
        print_json({"removed": name})
    else:
        typer.echo(f"removed {name}")
