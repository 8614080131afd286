"""Top-level handlers for the force_kill_on_timeout tests: a child process imports them by name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def spin(payload: dict[str, str]) -> None:
    """Write this process's pid, then burn CPU forever (ignores every cancellation)."""
    Path(payload["pid_file"]).write_text(str(os.getpid()))
    while True:
        pass


def double(payload: dict[str, int]) -> int:
    """Return twice the number, from the child process."""
    return payload["n"] * 2


def explode(payload: dict[str, Any]) -> None:
    """Raise, from the child process."""
    raise ValueError("bad input in the child")


async def whoami(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """An async handler in the child: report what its context knows."""
    return {"job_id": ctx.job_id, "attempt": ctx.attempt, "pid": os.getpid()}
