"""Shared fixtures: every behaviour test runs on every store through the `queue` fixture."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agentqueue import Queue

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Each store the conformance suite runs on. "sqlite" is a real file (multi-connection and
# multi-process behave as in production); "memory" is the in-memory store.
STORES = ["sqlite", "memory"]


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, isolated store URL, one per store kind."""
    kind: str = request.param
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    return "memory://"


@pytest.fixture
async def queue(store_url: str) -> AsyncIterator[Queue]:
    """An opened, migrated queue on a fresh store."""
    async with Queue(store_url) as opened:
        yield opened


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file URL (for tests that need a store shared with other processes)."""
    return f"sqlite:///{tmp_path / 'shared.db'}"


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.01
) -> Any:
    """Poll `check` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")
        await asyncio.sleep(interval)
