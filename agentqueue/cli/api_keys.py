"""`agentqueue api-keys …`: create, list and revoke the keys of the REST and MCP doors."""

from __future__ import annotations

from typing import Annotated

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
from agentqueue.models import ApiKey, ApiScope

app = typer.Typer(
    name="api-keys",
    help=(
        "API keys for the REST API, the dashboard and MCP over HTTP.\n\nExamples:\n\n"
        "    agentqueue api-keys create --name ci --scope operate\n"
        "    agentqueue api-keys list\n"
    ),
    no_args_is_help=True,
)

NameOpt = Annotated[str, typer.Option("--name", help="The key's name (who uses it).")]


@app.command("create")
def create(
    name: NameOpt,
    scope: Annotated[
        ApiScope, typer.Option(help="read, operate (also change jobs) or admin (also purge).")
    ] = ApiScope.READ,
    url: UrlOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the key and its secret as JSON.")
    ] = False,
) -> None:
    """Make a key and print it once, alone on the last line (only its hash is stored).

    Examples:

        agentqueue api-keys create --name ci --scope operate
        agentqueue api-keys create --name ci --json | jq -r .secret
    """

    async def go() -> tuple[ApiKey, str]:
        async with opened_queue(url) as queue:
            return await queue.create_api_key(name, scope)

    key, secret = run(go())
    if json_output:
        print_json({**key.model_dump(mode="json"), "secret": secret})
        return
    typer.echo(f"created API key {key.name!r} (scope {key.scope.value}, id {key.id}).")
    typer.echo("It is shown only now; store it as a secret:")
    typer.echo(secret)


@app.command("list")
def list_keys(url: UrlOption = None, json_output: JsonOption = False) -> None:
    """List keys (never their secrets), revoked ones too.

    Examples:

        agentqueue api-keys list
        agentqueue api-keys list --json
    """

    async def go() -> list[ApiKey]:
        async with opened_queue(url) as queue:
            return await queue.list_api_keys()

    keys = run(go())
    if json_output:
        print_json([key.model_dump(mode="json") for key in keys])
    elif not keys:
        typer.echo("no API keys")
    else:
        print_table(
            ("id", "name", "scope", "created_at", "revoked_at"),
            [
                (k.id, k.name, k.scope.value, format_time(k.created_at), format_time(k.revoked_at))
                for k in keys
            ],
        )


@app.command("revoke")
def revoke(name: NameOpt, url: UrlOption = None, json_output: JsonOption = False) -> None:
    """Revoke the active key of a name (it stops working at once).

    Examples:

        agentqueue api-keys revoke --name ci
    """

    async def go() -> ApiKey:
        async with opened_queue(url) as queue:
            return await queue.revoke_api_key(name)

    key = run(go())
    if json_output:
        print_json(key.model_dump(mode="json"))
        return
    typer.echo(f"revoked API key {key.name!r} (id {key.id})")
