"""The root `agentqueue` command: `--version` and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from agentqueue.cli import admin, api_keys, cron, install, jobs, limits, tokens
from agentqueue.cli import worker as worker_commands
from agentqueue.cli.common import AgentQueueGroup
from agentqueue.cli.demo import demo
from agentqueue.cli.doctor import doctor
from agentqueue.cli.init import init
from agentqueue.cli.mcp import mcp
from agentqueue.cli.serve import serve
from agentqueue.cli.supervisor import supervisor

ROOT_HELP = """A durable background-job queue: run workers, add and inspect jobs.

Examples:

    agentqueue serve
    agentqueue worker --app myapp.jobs:queue
    agentqueue jobs add send_email --payload '{"to": "a@x.io"}'
    agentqueue jobs watch 1
    agentqueue stats
"""

app = typer.Typer(
    name="agentqueue",
    help=ROOT_HELP,
    cls=AgentQueueGroup,
    no_args_is_help=True,
    # User errors never reach here (the group prints them as one line); a traceback left is a
    # bug, and rich's locals dump could show secrets such as store passwords.
    pretty_exceptions_enable=False,
)
app.add_typer(jobs.app)
app.add_typer(tokens.app)
app.add_typer(cron.app)
app.add_typer(limits.app)
app.add_typer(api_keys.app)
app.command("worker")(worker_commands.worker)
app.command("supervisor")(supervisor)
app.command("migrate")(admin.migrate)
app.command("stats")(admin.stats)
app.command("job-types")(admin.job_types)
app.command("demo")(demo)
app.command("serve")(serve)
app.command("mcp")(mcp)
app.command("install-mcp")(install.install_mcp)
app.command("install-rules")(install.install_rules)
app.command("install-skills")(install.install_skills)
app.command("init")(init)
app.command("doctor")(doctor)


def _print_version(value: bool) -> None:
    if value:
        from agentqueue import __version__

        typer.echo(f"agentqueue {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """A durable background-job queue (the help shown is ROOT_HELP)."""


def main() -> None:
    """Run the command line (the `agentqueue` console script)."""
    app(prog_name="agentqueue")
