"""`agentqueue init`: a working agentqueue app in an existing Python project, never overwriting.

It writes a jobs module with one handler, the store setting in `.env.example`, and the worker
command where the project keeps its commands (a Makefile target, else a README section) —
each of the shared files as a managed block, so `--uninstall` takes them out again. A jobs
module that exists is kept as it is.
"""

from __future__ import annotations

import re
from pathlib import Path

from agentqueue.config import DEFAULT_URL
from agentqueue.errors import InvalidArgument
from agentqueue.installers import merge
from agentqueue.installers.clients import Scope
from agentqueue.installers.plan import Context, Plan, Target

TOOL = "init"
PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt")
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

JOBS_TEMPLATE = '''"""Background jobs of this project (made by `agentqueue init`).

    agentqueue worker --app {app}
    agentqueue jobs add send_welcome --payload '{{"email": "ana@example.com"}}'

The store is AGENTQUEUE_URL (see .env.example), else {default} (SQLite, no server).
"""

from __future__ import annotations

from pydantic import BaseModel

from agentqueue import JobContext, Queue

queue = Queue()


class Welcome(BaseModel):
    """The payload of a send_welcome job."""

    email: str


@queue.handler("send_welcome", description="Send the welcome e-mail to a new user", max_attempts=5)
async def send_welcome(payload: Welcome, ctx: JobContext) -> dict[str, str]:
    """Send one welcome e-mail; a job runs at least once, so make the sending idempotent."""
    ctx.set_progress(50, "sending")
    return {{"sent_to": payload.email}}
'''


def app_spec(module: str) -> str:
    """The `--app` value of the scaffolded queue."""
    return f"{module}:queue"


def _settings() -> str:
    return (
        "# The store agentqueue uses: sqlite:///path.db, postgresql://…, redis://…\n"
        f"AGENTQUEUE_URL={DEFAULT_URL}\n"
    )


def _make_targets(module: str) -> str:
    app = app_spec(module)
    return (
        ".PHONY: worker jobs-migrate\n"
        "worker:  ## run agentqueue workers for this project's jobs\n"
        f"\tagentqueue worker --app {app}\n"
        "jobs-migrate:  ## bring the job store's schema up to date\n"
        "\tagentqueue migrate\n"
    )


def _readme_section(module: str) -> str:
    app = app_spec(module)
    return (
        "## Background jobs\n\n"
        f"Jobs are defined in `{module.replace('.', '/')}.py` (agentqueue). Run a worker:\n\n"
        "```sh\n"
        "agentqueue migrate\n"
        f"agentqueue worker --app {app}\n"
        "```\n"
    )


def plan_init(root: Path, module: str, *, remove: bool, force: bool) -> Plan:
    """The edits of `agentqueue init` in `root`.

    Raises:
        InvalidArgument: `root` is not a Python project, or `module` is not a module name.
    """
    if not _MODULE.match(module):
        raise InvalidArgument(f"--module {module!r} is not a Python module name (e.g. myapp.jobs)")
    if not any((root / name).is_file() for name in PROJECT_FILES):
        raise InvalidArgument(
            f"{root} has none of {', '.join(PROJECT_FILES)}: run init in a Python project"
        )
    context = Context(Scope.PROJECT, root, remove=remove, force=force)
    plan = Plan(context)
    jail = context.jail
    jobs = jail.target(root, module.replace(".", "/") + ".py")
    edits: list[merge.Edit] = []
    if jobs.exists() or remove:
        plan.notes.append(f"kept {context.show(jobs)} (init never overwrites or deletes it)")
    else:
        edits.append(
            merge.Edit(jobs, None, JOBS_TEMPLATE.format(app=app_spec(module), default=DEFAULT_URL))
        )
    blocks: list[tuple[Path, str, tuple[str, str]]] = [
        (jail.target(root, ".env.example"), _settings(), merge.HASH)
    ]
    makefile = jail.target(root, "Makefile")
    if makefile.is_file():
        # A worker target of the user's own (outside our block) wins: never define it twice.
        theirs = merge.block_edit(makefile, "", TOOL, remove=True, force=True, comment=merge.HASH)
        if re.search(r"^worker\s*:", theirs.after or "", re.MULTILINE):
            plan.notes.append("Makefile already has a worker target: left as it is")
        else:
            blocks.append((makefile, _make_targets(module), merge.HASH))
    else:
        blocks.append((jail.target(root, "README.md"), _readme_section(module), merge.HTML))
    for path, body, comment in blocks:
        edits.append(
            merge.block_edit(path, body, TOOL, remove=remove, force=force, comment=comment)
        )
    plan.edits.extend((Target(None, edit.path, lambda edit=edit: edit), edit) for edit in edits)
    return plan
