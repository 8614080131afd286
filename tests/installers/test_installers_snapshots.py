"""Snapshots per client and scope: install, re-install (no change), check, dry-run, uninstall
(byte-identical restore), for a missing file and for a file that holds someone else's config.

Snapshots live in `snapshots/`; `UPDATE_SNAPSHOTS=1 pytest tests/installers` rewrites them
(review the diff before committing). The absolute executable of user-level entries is shown
as `<agentqueue>`, so snapshots do not depend on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentqueue.installers import mcp_config
from agentqueue.installers.clients import CLIENTS, Client, Scope
from agentqueue.installers.plan import Context
from tests.installers.conftest import Cli, tree

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"

# What a config file may already hold: another server, in the client's own shape.
OTHER = {
    "json": '{\n  "theme": "dark",\n  "%s": {\n    "other": {"command": "other-server"}\n  }\n}\n',
    "toml": 'model = "o3"  # the user\'s choice\n\n[mcp_servers.other]\ncommand = "other-server"\n',
}


def cases(kind: str) -> list[tuple[Client, Scope]]:
    """Every (client, scope) that has a file of this kind."""
    found = []
    for client in CLIENTS:
        for scope in Scope:
            spec = {"mcp": client.mcp, "rules": client.rules, "skills": client.skills}[kind]
            if spec is None:
                continue
            if (spec.project if scope is Scope.PROJECT else spec.user) is not None:
                found.append((client, scope))
    return found


def case_id(case: tuple[Client, Scope]) -> str:
    """`cursor-project` …"""
    return f"{case[0].name}-{case[1].value}"


def mcp_path(client: Client, scope: Scope, project: Path) -> Path:
    """Where the client's MCP config lives for this test."""
    path = Context(scope, project).locate(client.mcp.project, client.mcp.user, client.mcp.prefer)
    assert path is not None
    return path


def match_snapshot(name: str, text: str) -> None:
    """Compare with (or, with UPDATE_SNAPSHOTS=1, write) `snapshots/<name>`."""
    shown = text.replace(mcp_config.executable()[0], "<agentqueue>")
    path = SNAPSHOTS / name
    if UPDATE or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(shown, encoding="utf-8")
    assert shown == path.read_text(encoding="utf-8"), f"snapshot {name} differs"


def seed(client: Client, path: Path) -> str:
    """Write another server into the client's config; return the file's text."""
    syntax = client.mcp.syntax
    text = OTHER[syntax] % client.mcp.container[0] if syntax == "json" else OTHER[syntax]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


@pytest.mark.parametrize("prior", ["absent", "other-server"])
@pytest.mark.parametrize("case", cases("mcp"), ids=case_id)
def test_mcp_round_trip(case: tuple[Client, Scope], prior: str, cli: Cli, project: Path) -> None:
    client, scope = case
    path = mcp_path(client, scope, project)
    before = seed(client, path) if prior == "other-server" else None
    args = ("install-mcp", "--client", client.name, "--scope", scope.value)
    stdio = (*args, "--app", "myapp.jobs:queue")

    preview = cli(*stdio, "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert "+" in preview.output
    assert "agentqueue" in preview.output
    assert (path.read_text() if path.exists() else None) == before  # dry-run wrote nothing

    missing = cli(*stdio, "--check")
    assert missing.exit_code == 1
    assert "missing" in missing.output or "stale" in missing.output

    installed = cli(*stdio)
    assert installed.exit_code == 0, installed.output
    match_snapshot(f"mcp-{case_id(case)}-{prior}.txt", path.read_text())
    entry = mcp_config.read_entry(client.mcp, path)
    assert entry is not None
    if before is not None:
        assert "other-server" in path.read_text()  # the other server stays

    again = cli(*stdio)
    assert again.exit_code == 0
    assert "unchanged" in again.output
    assert cli(*stdio, "--check").exit_code == 0
    assert cli(*args, "--check").exit_code == 1  # without --app the entry is stale

    removed = cli(*args, "--uninstall")
    assert removed.exit_code == 0, removed.output
    assert (path.read_text() if path.exists() else None) == before  # byte for byte
    assert cli(*args, "--uninstall", "--check").exit_code == 0


@pytest.mark.parametrize("case", cases("mcp"), ids=case_id)
def test_mcp_http_entries(case: tuple[Client, Scope], cli: Cli, project: Path) -> None:
    client, scope = case
    result = cli(
        "install-mcp", "--client", client.name, "--scope", scope.value,
        "--transport", "http", "--server-url", "https://queue.example.com",
    )  # fmt: skip
    if not client.mcp.http:
        assert result.exit_code == 2
        assert "Connectors" in result.output
        return
    assert result.exit_code == 0, result.output
    match_snapshot(f"mcp-http-{case_id(case)}.txt", mcp_path(client, scope, project).read_text())


@pytest.mark.parametrize("prior", ["absent", "with-text"])
@pytest.mark.parametrize("case", cases("rules"), ids=case_id)
def test_rules_round_trip(case: tuple[Client, Scope], prior: str, cli: Cli, project: Path) -> None:
    client, scope = case
    spec = client.rules
    assert spec is not None
    path = Context(scope, project).locate(spec.project, spec.user, spec.prefer)
    assert path is not None
    before = None
    if prior == "with-text":
        if spec.frontmatter is not None:
            pytest.skip("a file of our own: an existing one is covered by the safety tests")
        before = "# Team notes\n\nUse tabs.\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(before)
    args = ("install-rules", "--client", client.name, "--scope", scope.value)
    assert cli(*args, "--dry-run").exit_code == 0
    assert (path.read_text() if path.exists() else None) == before
    assert cli(*args, "--check").exit_code == 1
    assert cli(*args).exit_code == 0
    text = path.read_text()
    match_snapshot(f"rules-{case_id(case)}-{prior}.txt", text)
    if before:
        assert text.startswith(before)
    assert "unchanged" in cli(*args).output
    assert cli(*args, "--check").exit_code == 0
    assert cli(*args, "--uninstall").exit_code == 0
    assert (path.read_text() if path.exists() else None) == before


@pytest.mark.parametrize("case", cases("skills"), ids=case_id)
def test_skills_round_trip(case: tuple[Client, Scope], cli: Cli, project: Path, home: Path) -> None:
    client, scope = case
    base = project if scope is Scope.PROJECT else home
    start = tree(base)
    args = ("install-skills", "--client", client.name, "--scope", scope.value)
    assert cli(*args, "--dry-run").exit_code == 0
    assert tree(base) == start
    assert cli(*args).exit_code == 0
    added = sorted(set(tree(base)) - set(start))
    match_snapshot(f"skills-{case_id(case)}.txt", "\n".join(added) + "\n")
    assert all(name.endswith("/SKILL.md") for name in added)
    assert "unchanged" in cli(*args).output
    assert cli(*args, "--check").exit_code == 0
    assert cli(*args, "--uninstall").exit_code == 0
    assert tree(base) == start
