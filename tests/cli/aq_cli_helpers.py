"""Assertions shared by the CLI tests (a module of its own: `conftest` names are ambiguous)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import Result

HERE = Path(__file__).parent
"""tests/cli: run a child CLI here and `--app aq_cli_demo_app:queue` imports."""

Invoke = Callable[..., Result]
"""`aq(*args, url=...)`: run the CLI in this process (see the `aq` fixture)."""


def ok(result: Result) -> str:
    """Assert the command succeeded and return its stdout."""
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


def ok_json(result: Result) -> Any:
    """Assert the command succeeded and return its stdout parsed as JSON."""
    return json.loads(ok(result))


def user_error(result: Result) -> str:
    """Assert the command failed as a user error: exit 2, nothing on stdout, one line on
    stderr starting with `error: `, no traceback. Return that line."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def run_cli(
    *args: str, cwd: Path, command: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process (by default `python -m agentqueue`) and wait for it."""
    env = {key: value for key, value in os.environ.items() if key != "AGENTQUEUE_URL"}
    env.pop("PYTHONPATH", None)  # --app must find the module from the current directory
    return subprocess.run(
        [*(command or [sys.executable, "-m", "agentqueue"]), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
