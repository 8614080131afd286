"""`agentqueue mcp`: the MCP server on stdio, for agents in editors and agent runtimes."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from agentqueue.cli.common import AppOption, UrlOption, make_queue, run
from agentqueue.models import ApiScope


def mcp(
    url: UrlOption = None,
    app_spec: AppOption = None,
    scope: Annotated[
        ApiScope,
        typer.Option(help="What the agent may do: read, operate (add, cancel, tokens) or admin."),
    ] = ApiScope.ADMIN,
    actor: Annotated[
        str, typer.Option(help="The name jobs and audit records give the agent.")
    ] = "local",
) -> None:
    """Serve MCP on stdio: stdout carries only the protocol, logs go to stderr.

    With --app the agent also gets your job types' schemas from the handlers; without, from
    what workers published in the store.

    Examples:

        agentqueue mcp --app myapp.jobs:queue
        agentqueue mcp --scope read --actor claude
    """
    from agentqueue.mcp import LocalAccess, build_server

    # The protocol owns stdout: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    queue = make_queue(url, app_spec)
    server = build_server(queue, local=LocalAccess(actor=actor, scope=scope))

    async def serve() -> None:
        try:
            await server.run_stdio_async()
        finally:
            await queue.close()

    run(serve())
