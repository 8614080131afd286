"""`install-rules`: the always-on rules (`ai_rules/agentqueue.md`) where each client reads them.

Shared Markdown files (CLAUDE.md, AGENTS.md, GEMINI.md, a user's global rules) get a managed
block between markers; clients with a rules folder (Cursor, Copilot, Windsurf) get a file of
our own with the frontmatter that makes it always apply — a Cursor `.mdc` without frontmatter
would only apply when attached by hand.
"""

from __future__ import annotations

from agentqueue.installers import content, merge
from agentqueue.installers.clients import Client
from agentqueue.installers.plan import Context, Target

TOOL = "install-rules"


def owned_rule(frontmatter: str) -> str:
    """The text of a rules file of our own: frontmatter, then the rules."""
    return f"---\n{frontmatter}\n---\n{content.rules_text()}"


def targets(client: Client, context: Context) -> list[Target]:
    """The rules file of `client` at this run's scope (none when it has no such file)."""
    spec = client.rules
    if spec is None:
        return []
    path = context.locate(spec.project, spec.user, spec.prefer)
    if path is None:
        return []
    frontmatter = spec.frontmatter
    if frontmatter is None:

        def plan() -> merge.Edit:
            return merge.block_edit(
                path, content.rules_text(), TOOL, remove=context.remove, force=context.force
            )

    else:

        def plan() -> merge.Edit:
            return merge.owned_edit(
                path, owned_rule(frontmatter), TOOL, remove=context.remove, force=context.force
            )

    return [Target(client, path, plan)]
