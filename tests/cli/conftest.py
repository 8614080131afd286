"""Fixtures of the CLI tests: a runner bound to a fresh SQLite file, and the demo app."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aq_cli_helpers import Invoke
from typer.testing import CliRunner, Result

from agentqueue.cli import app

HERE = Path(__file__).parent
DEMO_MODULE = "aq_cli_demo_app"
DEMO_APP = f"{DEMO_MODULE}:queue"


@pytest.fixture(autouse=True)
def _isolated_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what the CLI changes in this process: sys.path (`--app`), logging (`worker`: its
    handlers, levels and filters), and keep AGENTQUEUE_URL of the developer's shell out of
    the tests."""
    monkeypatch.delenv("AGENTQUEUE_URL", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    root = logging.getLogger()
    ours = logging.getLogger("agentqueue")
    saved = (list(root.handlers), root.level, ours.level)
    # `worker` adds agentqueue's filters to handlers already there (pytest's own, here).
    filters = [(handler, list(handler.filters)) for handler in root.handlers]
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])
    for handler, kept in filters:
        handler.filters[:] = kept


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite file URL."""
    return f"sqlite:///{tmp_path / 'q.db'}"


@pytest.fixture
def runner() -> CliRunner:
    """A CLI runner (stdout and stderr kept apart)."""
    return CliRunner()


@pytest.fixture
def aq(runner: CliRunner, db_url: str) -> Invoke:
    """Run `agentqueue ARGS --url <fresh db>` in this process and return the result."""

    def invoke(*args: str, url: str | None = db_url) -> Result:
        argv = [*args, "--url", url] if url is not None else list(args)
        return runner.invoke(app, argv, prog_name="agentqueue")

    return invoke


@pytest.fixture
def demo_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The `--app` spec of the demo app, imported fresh for each test (its Queue is state)."""
    monkeypatch.syspath_prepend(str(HERE))
    sys.modules.pop(DEMO_MODULE, None)
    yield DEMO_APP
    sys.modules.pop(DEMO_MODULE, None)
