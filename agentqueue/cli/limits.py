"""`agentqueue limits …`: list, set and remove flow limits; pause and resume job types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from agentqueue.cli.common import (
    JsonOption,
    UrlOption,
    format_time,
    opened_queue,
    print_json,
    print_table,
    run,
)
from agentqueue.errors import InvalidArgument
from agentqueue.models import Limit
from agentqueue.queue import Queue

app = typer.Typer(
    name="limits",
    help=(
        "Concurrency and rate limits per job type or group, and paused job types.\n\nExamples:\n\n"
        "    agentqueue limits set --job-type call_llm --max-concurrent 2\n"
        "    agentqueue limits list\n"
    ),
    no_args_is_help=True,
)

T = TypeVar("T")
Opt = typer.Option
JobTypeOpt = Annotated[
    str | None, Opt("--job-type", help="The job type to limit.", show_default=False)
]
GroupOpt = Annotated[
    str | None,
    Opt(
        "--group",
        help="The group to limit ('*': each group without its own limit).",
        show_default=False,
    ),
]
JobTypeArg = Annotated[str, typer.Argument(help="The job type.", show_default=False)]

COLUMNS = ("scope", "key", "max_concurrent", "rate", "paused", "updated_at")


def _row(limit: Limit) -> list[Any]:
    rate = f"{limit.rate_limit}/{limit.rate_period:g}s" if limit.rate_limit else ""
    return [
        limit.scope.value,
        limit.key,
        "" if limit.max_concurrent is None else limit.max_concurrent,
        rate,
        "yes" if limit.paused else "",
        format_time(limit.updated_at),
    ]


def _act(url: str | None, action: Callable[[Queue], Awaitable[T]]) -> T:
    async def go() -> T:
        async with opened_queue(url) as queue:
            return await action(queue)

    return run(go())


def _number(option: str, text: str | None, kind: type[int] | type[float]) -> Any:
    """An option's number, or None for `none` (remove that limit)."""
    if text is None or text.lower() == "none":
        return None
    try:
        return kind(text)
    except ValueError:
        raise InvalidArgument(f"{option} takes a number or 'none', not {text!r}") from None


def _show(limit: Limit | None, json_output: bool, gone: str) -> None:
    if json_output:
        print_json(limit.model_dump(mode="json") if limit is not None else None)
    elif limit is None:
        typer.echo(gone)
    else:
        print_table(COLUMNS, [_row(limit)])


@app.command("list")
def list_limits(url: UrlOption = None, json_output: JsonOption = False) -> None:
    """List every limit and paused job type.

    Examples:

        agentqueue limits list
        agentqueue limits list --json
    """
    found = _act(url, lambda queue: queue.list_limits())
    if json_output:
        print_json([limit.model_dump(mode="json") for limit in found])
    elif not found:
        typer.echo("no limits")
    else:
        print_table(COLUMNS, [_row(limit) for limit in found])


@app.command("set")
def set_limit(
    job_type: JobTypeOpt = None,
    group: GroupOpt = None,
    max_concurrent: Annotated[
        str | None,
        Opt(
            "--max-concurrent",
            help="Most jobs processing at once ('none' removes it).",
            show_default=False,
        ),
    ] = None,
    rate: Annotated[
        str | None,
        Opt(
            "--rate",
            help="Most jobs started per --per seconds ('none' removes it).",
            show_default=False,
        ),
    ] = None,
    per: Annotated[
        float | None, Opt("--per", help="The rate's window in seconds (1).", show_default=False)
    ] = None,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Change a job type's or group's limit; options not given stay as they are.

    Examples:

        agentqueue limits set --job-type call_llm --max-concurrent 2
        agentqueue limits set --group tenant-7 --rate 10 --per 60
    """
    changes: dict[str, Any] = {}
    if max_concurrent is not None:
        changes["max_concurrent"] = _number("--max-concurrent", max_concurrent, int)
    if rate is not None:
        changes["rate_limit"] = _number("--rate", rate, int)
    if per is not None:
        changes["rate_period"] = per
    stored = _act(url, lambda queue: queue.set_limit(job_type=job_type, group=group, **changes))
    _show(stored, json_output, "nothing limited any more")


@app.command("remove")
def remove_limit(
    job_type: JobTypeOpt = None,
    group: GroupOpt = None,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Remove every limit of a job type or group (a pause too).

    Examples:

        agentqueue limits remove --job-type call_llm
    """
    removed = _act(url, lambda queue: queue.remove_limit(job_type=job_type, group=group))
    if json_output:
        print_json({"removed": removed})
    else:
        typer.echo("removed" if removed else "it had no limit")


@app.command("pause")
def pause(job_type: JobTypeArg, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Start no job of a job type until it is resumed (running ones finish).

    Examples:

        agentqueue limits pause send_email
    """
    stored = _act(url, lambda queue: queue.pause_job_type(job_type))
    _show(stored, json_output, "")


@app.command("resume")
def resume(job_type: JobTypeArg, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Let a paused job type's jobs start again.

    Examples:

        agentqueue limits resume send_email
    """
    stored = _act(url, lambda queue: queue.resume_job_type(job_type))
    _show(stored, json_output, f"{job_type} resumed (no other limit)")
