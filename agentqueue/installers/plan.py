"""What every installer shares: targets in the jail, a plan of edits, and the three modes.

An installer (`mcp_config`, `rules`, `skills`) turns the chosen clients into `Target`s — a
file and a function that plans its edit. `make_plan` plans them all, one per file (clients
that share AGENTS.md or `.agents/skills` share its target), and collects what cannot be done
safely instead of stopping at it. Then exactly one of: `check` (report, write nothing),
`diff` (`--dry-run`: the exact unified diff), or `apply` — which writes nothing at all when
any file is unsafe, so a run never leaves half of an install behind.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agentqueue.errors import AgentQueueError
from agentqueue.installers import merge
from agentqueue.installers.clients import Client, Scope, UserPath
from agentqueue.installers.paths import Jail, home, user_roots


@dataclass(frozen=True)
class Context:
    """One run's choices."""

    scope: Scope
    root: Path
    """The project root (project scope; also where user-scope runs start from)."""
    remove: bool = False
    force: bool = False

    @property
    def jail(self) -> Jail:
        """Where this run may write."""
        return Jail.of(self.root) if self.scope is Scope.PROJECT else Jail.of(*user_roots())

    @property
    def base(self) -> Path:
        """The directory paths are shown relative to."""
        return self.root if self.scope is Scope.PROJECT else home()

    def locate(
        self, project: str | None, user: UserPath | None, prefer: tuple[str, ...] = ()
    ) -> Path | None:
        """The file for this scope (an existing `prefer` file wins), checked against the jail;
        None when the client has none at this scope.

        Raises:
            PathRefused: the path leaves the jail.
        """
        if self.scope is Scope.USER:
            if user is None:
                return None
            path = user()
            self.jail.check(path)
            return path
        if project is None:
            return None
        for candidate in prefer:
            path = self.jail.target(self.root, candidate)
            if path.is_file():
                return path
        return self.jail.target(self.root, project)

    def show(self, path: Path) -> str:
        """`path` for messages: relative to the project, or `~/…`."""
        try:
            relative = path.relative_to(self.base).as_posix()
        except ValueError:
            return str(path)
        return relative if self.scope is Scope.PROJECT else f"~/{relative}"


@dataclass(frozen=True)
class Target:
    """A file an installer manages for a client (None: for no client, as `init`'s), and how
    to plan its edit."""

    client: Client | None
    path: Path
    plan: Callable[[], merge.Edit]


@dataclass
class Plan:
    """The planned edits of one run, what could not be planned, and notes for the user."""

    context: Context
    edits: list[tuple[Target, merge.Edit]] = field(default_factory=list)
    problems: list[tuple[Target | None, AgentQueueError]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


Planner = Callable[[Client, Context], list[Target]]


def make_plan(clients: list[Client], context: Context, planner: Planner, what: str) -> Plan:
    """Plan every target of every client (each file once); `what` names the kind of file in
    the note about a client that has none at this scope."""
    plan = Plan(context)
    seen: set[Path] = set()
    for client in clients:
        try:
            targets = planner(client, context)
        except AgentQueueError as error:
            plan.problems.append((None, error))
            continue
        if not targets:
            unsupported(plan, client, what)
        for target in targets:
            if target.path in seen:
                continue
            seen.add(target.path)
            try:
                context.jail.check(target.path)
                plan.edits.append((target, target.plan()))
            except AgentQueueError as error:
                plan.problems.append((target, error))
    return plan


def unsupported(plan: Plan, client: Client, what: str) -> None:
    """Note that `client` has nothing of `what` at this run's scope."""
    plan.notes.append(f"{client.name}: has no {plan.context.scope.value}-level {what}")


def status(edit: merge.Edit, remove: bool) -> str:
    """One word for a planned edit: ok (nothing to do), missing, stale, or present."""
    if not edit.changed:
        return "ok"
    if remove:
        return "present"
    return "missing" if edit.before is None else "stale"


def diff(plan: Plan) -> list[str]:
    """The unified diff of every change, as `--dry-run` prints it."""
    lines: list[str] = []
    for _, edit in plan.edits:
        if not edit.changed:
            continue
        name = plan.context.show(edit.path)
        lines.extend(
            difflib.unified_diff(
                (edit.before or "").splitlines(keepends=True),
                (edit.after or "").splitlines(keepends=True),
                fromfile="/dev/null" if edit.before is None else f"a/{name}",
                tofile="/dev/null" if edit.after is None else f"b/{name}",
            )
        )
    return [
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    ]


def apply(plan: Plan) -> list[str]:
    """Write every changed edit; return one line per file saying what happened.

    The caller has made sure the plan has no problems.
    """
    lines: list[str] = []
    context = plan.context
    for target, edit in plan.edits:
        name = context.show(edit.path)
        if not edit.changed:
            lines.append(f"unchanged  {name}")
            continue
        context.jail.check(edit.path)  # again, right before writing
        backup = merge.write(edit)
        verb = "removed" if edit.after is None else "created" if edit.before is None else "updated"
        extra = f" (backup {context.show(backup)})" if backup else ""
        owner = f"  [{target.client.name}]" if target.client else ""
        lines.append(f"{verb.ljust(9)}  {name}{extra}{owner}")
    return lines
