"""Installer tests: every test gets a temporary HOME (the real one is never touched) and an
empty project directory; `cli` runs the agentqueue command line in-process."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from agentqueue.cli.app import app

Cli = Callable[..., Result]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME; the other variables user paths read are cleared."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    for name in ("XDG_CONFIG_HOME", "APPDATA", "CODEX_HOME", "CI"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project root."""
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def cli(project: Path) -> Cli:
    """Run `agentqueue ARGS --root <project>` (unless the args name a root)."""

    def invoke(*args: str, root: Path | None = None) -> Result:
        extra = [] if "--root" in args else ["--root", str(root or project)]
        return CliRunner().invoke(app, [*args, *extra], env={"COLUMNS": "200"})

    return invoke


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path → bytes), symlinks as their target."""
    found: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *(d for d in dirnames if Path(dirpath, d).is_symlink())]:
            path = Path(dirpath, name)
            key = path.relative_to(root).as_posix()
            found[key] = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    return found
