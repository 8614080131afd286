"""Hostile paths: `..`, absolute paths and symlinks out of the project are refused, and no
install, whatever the project looks like, writes a byte outside its temporary jail."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agentqueue.cli.app import app
from agentqueue.installers.paths import Jail, PathRefused
from tests.installers.conftest import Cli, tree

PARTS = st.sampled_from(["..", ".", "a", "b", "link", ".cursor", "", "/", "C:", "x\\..\\.."])
CLIENT_DIRS = [
    ".cursor",
    ".vscode",
    ".claude",
    ".claude/skills",
    ".agents",
    ".windsurf",
    ".zed",
    ".gemini",
    ".codex",
    ".github",
    "AGENTS.md",
    "CLAUDE.md",
    ".mcp.json",
    "GEMINI.md",
]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(PARTS, min_size=1, max_size=5))
def test_jail_target_never_leaves_the_root(parts: list[str], tmp_path: Path) -> None:
    root = tmp_path / "jail"
    (root / "a").mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    link = root / "link"
    if not link.is_symlink():
        link.symlink_to(outside)
    relative = "/".join(parts)
    try:
        path = Jail.of(root).target(root, relative)
    except PathRefused:
        return
    resolved = path.resolve()
    assert resolved == root.resolve() or root.resolve() in resolved.parents


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    links=st.sets(st.sampled_from(CLIENT_DIRS), max_size=5),
    command=st.sampled_from(["install-mcp", "install-rules", "install-skills"]),
    uninstall=st.booleans(),
)
def test_no_install_writes_outside_the_jail(links: set[str], command: str, uninstall: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        project, outside = base / "project", base / "outside"
        for folder in (project, outside / "victim"):
            folder.mkdir(parents=True)
        (outside / "victim" / "keep.md").write_text("do not touch\n")
        for name in sorted(links):
            target = project / name
            if target.parent.is_symlink():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() and not target.is_symlink():
                target.symlink_to(outside / "victim" / Path(name).name)
        before = tree(outside)
        args = [command, "--client", "all", "--root", str(project)]
        result = CliRunner().invoke(app, args + (["--uninstall"] if uninstall else []))
        assert result.exit_code in (0, 2), result.output
        if result.exit_code == 2:
            assert result.output.strip().splitlines()[-1].startswith("error: ")
        assert tree(outside) == before
        shutil.rmtree(project)


def test_a_symlinked_client_dir_is_refused(cli: Cli, project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (project / ".cursor").symlink_to(outside)
    result = cli("install-mcp", "--client", "cursor")
    assert result.exit_code == 2
    assert "refused" in result.output
    assert list(outside.iterdir()) == []


def test_a_symlink_inside_the_project_is_followed(cli: Cli, project: Path) -> None:
    real = project / "config" / "cursor"
    real.mkdir(parents=True)
    (project / ".cursor").symlink_to(real)
    assert cli("install-mcp", "--client", "cursor").exit_code == 0
    assert (real / "mcp.json").is_file()
    assert (project / ".cursor").is_symlink()


def test_user_scope_writes_only_under_home(cli: Cli, home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "other-place"
    outside.mkdir()
    (home / ".cursor").symlink_to(outside)
    assert cli("install-mcp", "--client", "cursor", "--scope", "user").exit_code == 2
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("relative", ["../x", "/etc/passwd", "a/../../x", "C:/x", ""])
def test_bad_relative_paths(relative: str, project: Path) -> None:
    with pytest.raises(PathRefused):
        Jail.of(project).target(project, relative)
    assert os.listdir(project) == []
