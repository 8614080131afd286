"""`agentqueue install-mcp | install-rules | install-skills`: wire agentqueue into agent clients.

All three share one flow (`run_install`): pick the clients, plan every file, then check,
show the diff (`--dry-run`) or write. Non-interactive unless started on a terminal without
`--client`; then a numbered picker offers the clients found.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from agentqueue.cli.common import AppOption, UrlOption, fail, split_list
from agentqueue.installers import clients, mcp_config, rules, skills
from agentqueue.installers.clients import CLIENTS, Client, Scope
from agentqueue.installers.plan import Context, Plan, Planner, apply, diff, make_plan, status

CHECK_FAILED_EXIT_CODE = 1
"""`--check` found something missing or stale (2 stays the code of user errors)."""

ClientOption = Annotated[
    list[str] | None,
    typer.Option(
        "--client",
        help=f"Client(s): {', '.join(clients.names())}, all, or auto (the ones found here). "
        "Repeat or comma-separate. Default: auto (a picker on a terminal).",
        show_default=False,
    ),
]
ScopeOption = Annotated[
    Scope,
    typer.Option(help="project: files in the project (commit them); user: your own config."),
]
RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root", help="The project root (default: the current directory).", show_default=False
    ),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print the exact diff; write nothing.")
]
CheckOption = Annotated[
    bool, typer.Option("--check", help="Exit 1 when anything is missing or stale; write nothing.")
]
UninstallOption = Annotated[
    bool, typer.Option("--uninstall", help="Remove exactly what an install added.")
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Replace our files or blocks even when edited by hand.")
]


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty() and not os.environ.get("CI")


def _pick(scope: Scope, root: Path) -> list[Client]:
    """A numbered picker; Enter takes the clients found."""
    found = clients.detected(scope, root)
    for number, client in enumerate(CLIENTS, 1):
        mark = "  (found)" if client in found else ""
        typer.echo(f"{number:>2}. {client.title} [{client.name}]{mark}")
    default = ",".join(str(CLIENTS.index(client) + 1) for client in found) or "all"
    answer = typer.prompt("Clients (numbers, comma-separated, or all)", default=default)
    if answer.strip() == "all":
        return list(CLIENTS)
    picked: list[Client] = []
    for part in answer.split(","):
        if not part.strip().isdigit() or not 1 <= int(part) <= len(CLIENTS):
            fail(f"{part.strip()!r} is not a number from 1 to {len(CLIENTS)}")
        picked.append(CLIENTS[int(part) - 1])
    return picked


def _report_problems(plan: Plan, *, check: bool) -> None:
    for target, error in plan.problems:
        snippet = getattr(error, "snippet", None)
        if snippet and not check and target is not None:
            typer.echo(f"# add this to {plan.context.show(target.path)} by hand:\n{snippet}")
        if check:
            typer.echo(f"unsafe   {error.message}")


def run_install(
    planner: Planner,
    what: str,
    values: list[str] | None,
    *,
    scope: Scope,
    root: Path | None,
    dry_run: bool,
    check: bool,
    uninstall: bool,
    force: bool,
) -> Plan | None:
    """Plan and then check, diff or apply; return the applied plan (None when nothing was
    written)."""
    if dry_run and check:
        fail("--dry-run and --check do not go together: --check already writes nothing")
    base = (root or Path.cwd()).resolve()
    if not base.is_dir():
        fail(f"--root {str(base)!r} is not a directory")
    chosen = (
        _pick(scope, base)
        if not values and _interactive()
        else clients.select(split_list(values), scope, base)
    )
    plan = make_plan(chosen, Context(scope, base, remove=uninstall, force=force), planner, what)
    for note in plan.notes:
        typer.echo(f"skipped  {note}", err=True)
    if not plan.edits and not plan.problems:
        fail(f"nothing to do: {'; '.join(plan.notes)}")
    if check:
        return _check(plan, uninstall)
    _report_problems(plan, check=False)
    if plan.problems:
        first = plan.problems[0][1].message
        more = f" (and {len(plan.problems) - 1} more)" if len(plan.problems) > 1 else ""
        fail(f"{first}{more}; nothing was written")
    if dry_run:
        text = "".join(diff(plan))
        typer.echo(text.rstrip("\n") if text else "nothing to change")
        return None
    for line in apply(plan):
        typer.echo(line)
    return plan


def _check(plan: Plan, uninstall: bool) -> None:
    _report_problems(plan, check=True)
    bad = len(plan.problems)
    for _, edit in plan.edits:
        word = status(edit, uninstall)
        bad += word != "ok"
        typer.echo(f"{word.ljust(7)}  {plan.context.show(edit.path)}")
    if bad:
        raise typer.Exit(CHECK_FAILED_EXIT_CODE)


def install_mcp(
    client: ClientOption = None,
    scope: ScopeOption = Scope.PROJECT,
    transport: Annotated[
        str, typer.Option(help="stdio: the client starts `agentqueue mcp`; http: a running server.")
    ] = "stdio",
    server_url: Annotated[
        str | None,
        typer.Option(help="With --transport http: the server, e.g. https://queue.example.com."),
    ] = None,
    token_env: Annotated[
        str,
        typer.Option(help="The variable holding the API key (HTTP); '' for none."),
    ] = mcp_config.DEFAULT_TOKEN_ENV,
    app_spec: AppOption = None,
    url: UrlOption = None,
    root: RootOption = None,
    dry_run: DryRunOption = False,
    check: CheckOption = False,
    uninstall: UninstallOption = False,
    force: ForceOption = False,
) -> None:
    """Add the agentqueue MCP server to each client's config, in that client's format.

    Other servers and settings, comments and formatting stay; a file that does not parse is
    left untouched (the entry is printed to add by hand).

    Examples:

        agentqueue install-mcp --client claude-code --app myapp.jobs:queue
        agentqueue install-mcp --client cursor --transport http --server-url https://queue.example.com
        agentqueue install-mcp --check
    """
    server = mcp_config.Server(transport, app_spec, url, server_url, token_env or None)
    plan = run_install(
        mcp_config.targets(server),
        "MCP config",
        client,
        scope=scope,
        root=root,
        dry_run=dry_run,
        check=check,
        uninstall=uninstall,
        force=force,
    )
    if plan is not None and not uninstall:
        notes = {t.client.mcp.note for t, _ in plan.edits if t.client and t.client.mcp.note}
        for note in sorted(notes):
            typer.echo(f"note: {note}")


def _files_command(planner: Planner, what: str, doc: str) -> Callable[..., None]:
    """A command that installs files with no options of their own (rules, skills)."""

    def command(
        client: ClientOption = None,
        scope: ScopeOption = Scope.PROJECT,
        root: RootOption = None,
        dry_run: DryRunOption = False,
        check: CheckOption = False,
        uninstall: UninstallOption = False,
        force: ForceOption = False,
    ) -> None:
        run_install(
            planner,
            what,
            client,
            scope=scope,
            root=root,
            dry_run=dry_run,
            check=check,
            uninstall=uninstall,
            force=force,
        )

    command.__doc__ = doc
    return command


install_rules = _files_command(
    rules.targets,
    "rules file",
    """Add agentqueue's short always-on rules where each client reads instructions.

    A block between markers in CLAUDE.md / AGENTS.md / GEMINI.md; a file of our own with the
    right frontmatter for Cursor, Copilot and Windsurf.

    Examples:

        agentqueue install-rules --client claude-code
        agentqueue install-rules --dry-run
    """,
)
install_skills = _files_command(
    skills.targets,
    "skills folder",
    """Copy agentqueue's Agent Skills (usage, handlers, durable, operations) where each client
    looks for skills (.claude/skills, .agents/skills, .windsurf/skills …).

    Examples:

        agentqueue install-skills --client claude-code
        agentqueue install-skills --scope user --dry-run
    """,
)
