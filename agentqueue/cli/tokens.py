"""`agentqueue tokens …`: create, list, show and complete human-in-the-loop tokens."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agentqueue.cli.common import (
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
from agentqueue.errors import TokenNotFound
from agentqueue.models import Token

app = typer.Typer(
    name="tokens",
    help=(
        "Create, list, show and complete human-in-the-loop tokens.\n\nExamples:\n\n"
        "    agentqueue tokens list --status pending\n"
        "    agentqueue tokens complete tok_123 --data '{\"approved\": true}'\n"
    ),
    no_args_is_help=True,
)

TokenId = Annotated[str, typer.Argument(help="The token's id (tok_…).", show_default=False)]
TagOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", help="A tag; repeat (or comma-separate) for several.", show_default=False
    ),
]


def _print_token(token: Token, json_output: bool) -> None:
    if json_output:
        print_json(token.model_dump(mode="json"))
        return
    data = token.model_dump()
    data["status"] = token.status.value
    data["tags"] = ", ".join(token.tags)
    print_fields(list(data.items()))


@app.command("create")
def create(
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds until it expires (default: never).", show_default=False),
    ] = None,
    tag: TagOption = None,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a pending token; its id is printed alone on the last line.

    Examples:

        agentqueue tokens create --timeout 3600 --tag approval
    """

    async def go() -> Token:
        async with opened_queue(url) as queue:
            return await queue.create_token(timeout=timeout, tags=split_list(tag))

    token = run(go())
    if json_output:
        print_json(token.model_dump(mode="json"))
    else:
        typer.echo(token.id)


@app.command("list")
def list_tokens(
    status: Annotated[
        list[str] | None,
        typer.Option(help="pending, completed or expired; repeat for several.", show_default=False),
    ] = None,
    tag: TagOption = None,
    job: Annotated[int | None, typer.Option(help="Only this job's tokens.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1-1000).")] = 100,
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """List tokens, newest first.

    Examples:

        agentqueue tokens list --status pending
        agentqueue tokens list --job 42 --json
    """

    async def go() -> list[Token]:
        async with opened_queue(url) as queue:
            return await queue.list_tokens(
                status=split_list(status), tags=split_list(tag), job_id=job, limit=limit
            )

    tokens = run(go())
    if json_output:
        print_json([token.model_dump(mode="json") for token in tokens])
        return
    print_table(
        ("id", "status", "job", "created_at", "expires_at", "tags"),
        [
            (
                token.id,
                token.status.value,
                token.job_id if token.job_id is not None else "",
                format_time(token.created_at),
                format_time(token.expires_at),
                ",".join(token.tags),
            )
            for token in tokens
        ],
    )


@app.command("show")
def show(token_id: TokenId, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Show one token.

    Examples:

        agentqueue tokens show tok_123
    """

    async def go() -> Token:
        async with opened_queue(url) as queue:
            token = await queue.get_token(token_id)
            if token is None:
                raise TokenNotFound(token_id)
            return token

    _print_token(run(go()), json_output)


@app.command("complete")
def complete(
    token_id: TokenId,
    data: Annotated[
        str,
        typer.Option(help="The answer as JSON, e.g. '{\"approved\": true}'.", show_default=False),
    ] = "null",
    url: UrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Complete a pending token with JSON data; the job waiting on it resumes.

    Examples:

        agentqueue tokens complete tok_123 --data '{"approved": true}'
    """
    value: Any = parse_json_option("--data", data)

    async def go() -> Token:
        async with opened_queue(url) as queue:
            return await queue.complete_token(token_id, value)

    _print_token(run(go()), json_output)
