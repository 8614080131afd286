"""What every CLI command shares: options, the error handler, app loading, output helpers.

Errors: every user mistake ends as one line `error: <message>` on stderr and exit code 2, never
a traceback. Commands raise the project's own errors (`AgentQueueError`) or let click raise its
usage errors; `user_errors`, wrapped around the root group (`AgentQueueGroup`), is the one place
that turns both into that line, so no command catches errors itself.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

from agentqueue.errors import AgentQueueError, ConfigError, InvalidArgument
from agentqueue.queue import Queue

try:  # typer >= 0.26 carries its own copy of click; its exceptions are not click's
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer runs on click itself
    import click  # pyright: ignore[reportMissingImports]  # typer < 0.26 depends on click

T = TypeVar("T")

ERROR_EXIT_CODE = 2
"""Exit code of every user error (click uses 2 for usage errors too)."""

# -- shared options -----------------------------------------------------------------------------
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Store URL, e.g. sqlite:///jobs.db (default: $AGENTQUEUE_URL, "
        "else sqlite:///./agentqueue.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="module:attribute of your Queue; its handlers validate payloads.",
        show_default=False,
    ),
]


# -- errors -------------------------------------------------------------------------------------
def fail(message: str) -> NoReturn:
    """Print `error: <message>` as one line on stderr and exit with code 2."""
    one_line = " ".join(message.split())
    typer.echo(f"error: {one_line}", err=True)
    raise typer.Exit(ERROR_EXIT_CODE)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn user errors (the project's own, and click's usage errors) into `fail`."""
    try:
        yield
    except AgentQueueError as error:
        fail(error.message)
    except click.exceptions.UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            # A group called without a subcommand: click shows its help, as it should.
            raise
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        fail(f"{error.format_message()}{hint}")


class AgentQueueGroup(TyperGroup):
    """The root command group: the CLI's one error handler.

    Subcommands (and the parsing of their arguments) run inside the root group's `invoke`, so
    catching there covers every command without each one repeating it; `parse_args` covers the
    root's own options.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse the root options; a bad one is reported as one line."""
        with user_errors():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command line; user errors become one line on stderr and exit code 2."""
        with user_errors():
            return super().invoke(ctx)


# -- running ------------------------------------------------------------------------------------
def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


def load_app(spec: str) -> Queue:
    """Import `module:attribute` (the current directory first on the path) and return the Queue.

    Raises:
        ConfigError: malformed spec, the module cannot be imported, no such attribute, or the
            attribute is not a `Queue`.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"--app {spec!r} must be module:attribute, e.g. myapp.jobs:queue")
    # The console script's sys.path does not include the directory it was started from, yet
    # that is where a user's app module usually lives.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        # Any exception while importing user code is reported, not traced: the message of an
        # ImportError already names the missing module, and the others name the problem.
        raise ConfigError(
            f"--app {spec!r}: cannot import {module_name!r}: {type(error).__name__}: {error}"
        ) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"--app {spec!r}: module {module_name!r} has no attribute {part!r}")
        target = getattr(target, part)
    if not isinstance(target, Queue):
        raise ConfigError(f"--app {spec!r} is a {type(target).__name__}, not an agentqueue Queue")
    return target


def make_queue(url: str | None, app: str | None = None) -> Queue:
    """Return the queue a command works on: the `--app` Queue (re-targeted by `--url`), else
    a plain queue on `--url` / AGENTQUEUE_URL."""
    if app is None:
        return Queue(url)
    queue = load_app(app)
    if url is not None:
        queue.use_url(url)
    return queue


@asynccontextmanager
async def opened_queue(url: str | None, app: str | None = None) -> AsyncIterator[Queue]:
    """Yield an opened queue (see `make_queue`) and close it afterwards."""
    queue = make_queue(url, app)
    try:
        await queue.open()
    except BaseException:
        # A failed open leaves the queue marked closed, so `Queue.close` would skip the store;
        # release its connections here.
        await queue.backend.close()
        raise
    try:
        yield queue
    finally:
        await queue.close()


# -- parsing ------------------------------------------------------------------------------------
def parse_json_option(option: str, text: str) -> Any:
    """Parse a JSON option value; `@path` reads the JSON from a file.

    Raises:
        InvalidArgument: names the option and says why the text is not JSON.
    """
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise InvalidArgument(
                f"{option}: cannot read {str(path)!r}: {error.strerror}"
            ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"{option} is not valid JSON: {error}") from None


def parse_time_option(option: str, text: str) -> datetime:
    """Parse an ISO 8601 time that carries a time zone (`Z` or an offset such as +02:00).

    Raises:
        InvalidArgument: the text is not ISO 8601, or it has no time zone (a naive time would
            be a guess between the client's, the worker's and the store's zones).
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(
            f"{option} {text!r} is not an ISO 8601 time, e.g. 2030-01-31T09:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise InvalidArgument(
            f"{option} {text!r} has no time zone: add Z (UTC) or an offset such as +02:00"
        )
    return value.astimezone(UTC)


def split_list(values: Sequence[str] | None) -> list[str] | None:
    """Flatten repeated and comma-separated option values (`--x a,b --x c`); None when empty."""
    if not values:
        return None
    items = [item.strip() for value in values for item in value.split(",")]
    return [item for item in items if item] or None


# -- output -------------------------------------------------------------------------------------
def print_json(data: Any) -> None:
    """Print JSON-ready data (e.g. `model_dump(mode="json")`) on stdout."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def format_time(value: datetime | None) -> str:
    """Format a time for tables: UTC to the second, `-` for none."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_value(value: Any) -> str:
    """Format one cell: `-` for None/empty, compact JSON for data, text otherwise."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as compact left-aligned columns under a header line."""
    cells = [[format_value(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    for line in [list(headers), *cells]:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def print_fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """Print `name  value` lines with the names aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        typer.echo(f"{name.ljust(width)}  {format_value(value)}")
