"""`agentqueue doctor`: check the store, the workers and every configured agent client."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from agentqueue.cli.common import AppOption, JsonOption, UrlOption, make_queue, print_json, run
from agentqueue.installers.doctor import Finding, check_clients, check_store
from agentqueue.queue import Queue

FAILED_EXIT_CODE = 1
"""A check failed (2 stays the code of user errors)."""
_MARKS = {True: "ok  ", False: "FAIL", None: "warn"}


def doctor(
    url: UrlOption = None,
    app_spec: AppOption = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="The project whose client configs to check (default: here).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds each MCP server gets to answer.")] = 30.0,
    json_output: JsonOption = False,
) -> None:
    """Check the store, the live workers and every agent client configured for agentqueue.

    The store: reachable, migrated, Redis eviction policy. For each client config naming
    agentqueue, start the configured MCP server and list its tools.

    Exits 1 when a check fails; warnings (no live worker) do not fail.

    Examples:

        agentqueue doctor --app myapp.jobs:queue
        agentqueue doctor --json | jq '.[] | select(.ok == false)'
    """
    base = (root or Path.cwd()).resolve()

    async def checks() -> list[Finding]:
        source = make_queue(url, app_spec)
        # Doctor reports a schema that is behind; it never migrates anything itself.
        queue = Queue(source.url, backend=source.backend, migrate=False)
        try:
            findings = await check_store(queue)
        finally:
            await queue.close()
        return findings + await check_clients(base, timeout)

    findings = run(checks())
    if json_output:
        print_json([dataclasses.asdict(finding) for finding in findings])
    for finding in [] if json_output else findings:
        typer.echo(f"{_MARKS[finding.ok]}  {finding.subject}: {finding.detail}")
    if any(finding.ok is False for finding in findings):
        raise typer.Exit(FAILED_EXIT_CODE)
