"""`install-skills`: the shipped Agent Skills copied where each client looks for them.

Each skill is a folder (`agentqueue-usage/SKILL.md` …) copied file by file into the client's
skills directory; every file carries our stamp, so an update replaces only files nobody
edited and an uninstall removes exactly the files we wrote (and folders left empty).
Copies, not symlinks: links break on Windows and in sandboxes, and would point into a
site-packages that changes with every upgrade.
"""

from __future__ import annotations

from agentqueue.installers import content, merge
from agentqueue.installers.clients import Client
from agentqueue.installers.plan import Context, Target

TOOL = "install-skills"


def targets(client: Client, context: Context) -> list[Target]:
    """One target per file of every shipped skill, in the client's skills directory."""
    spec = client.skills
    if spec is None:
        return []
    directory = context.locate(spec.project, spec.user)
    if directory is None:
        return []
    found: list[Target] = []
    for skill in content.skills():
        for relative, text in skill.files.items():
            path = context.jail.target(directory, f"{skill.name}/{relative}")

            def plan(path=path, text=text) -> merge.Edit:
                return merge.owned_edit(
                    path,
                    text,
                    TOOL,
                    remove=context.remove,
                    force=context.force,
                    prune_to=directory,
                )

            found.append(Target(client, path, plan))
    return found
