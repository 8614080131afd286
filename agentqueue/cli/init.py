"""`agentqueue init`: scaffold a working agentqueue app in an existing Python project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentqueue.cli.common import fail
from agentqueue.cli.install import DryRunOption, ForceOption, RootOption, UninstallOption
from agentqueue.installers import scaffold
from agentqueue.installers.plan import apply, diff


def init(
    module: Annotated[
        str, typer.Option(help="The module to create for your jobs (myapp.jobs → myapp/jobs.py).")
    ] = "jobs",
    root: RootOption = None,
    dry_run: DryRunOption = False,
    uninstall: UninstallOption = False,
    force: ForceOption = False,
) -> None:
    """Scaffold an app here: a jobs module, the store setting and the worker command.

    Adds a jobs module with one handler, the store setting (.env.example) and the worker
    command (a Makefile target, else a README section). Never overwrites a file: shared files
    get a managed block, and an existing jobs module is kept.

    Examples:

        agentqueue init --module myapp.jobs --dry-run
        agentqueue init --module myapp.jobs
    """
    base = (root or Path.cwd()).resolve()
    plan = scaffold.plan_init(base, module, remove=uninstall, force=force)
    for note in plan.notes:
        typer.echo(f"skipped  {note}", err=True)
    if dry_run:
        text = "".join(diff(plan))
        typer.echo(text.rstrip("\n") if text else "nothing to change")
        return
    if not plan.edits:
        fail("nothing to do")
    for line in apply(plan):
        typer.echo(line)
    if not uninstall:
        app = scaffold.app_spec(module)
        typer.echo(
            f"next: agentqueue worker --app {app}   ·   agentqueue install-mcp --app {app}"
            "   ·   agentqueue doctor"
        )
