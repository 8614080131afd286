"""Assertions shared by the CLI tests (a module of its own: `conftest` names are ambiguous)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from typer.testing import Result

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
