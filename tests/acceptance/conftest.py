"""Fixtures of the acceptance tests: a shared store, a ledger and the processes started."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agentqueue import Queue
from tests.acceptance import ledger
from tests.acceptance.procs import Env, kill_all


@pytest.fixture
def env(shared_url: str, tmp_path: Path) -> Iterator[Env]:
    """A fresh shared store (SQLite file, PostgreSQL schema, Redis prefix) and a ledger file
    outside it; every process started is killed at the end."""
    ledger_path = tmp_path / "ledger.db"
    ledger.create(str(ledger_path))
    setup = Env(shared_url, str(ledger_path), tmp_path, [])
    try:
        yield setup
    finally:
        kill_all(setup.started)


@pytest.fixture
async def queue(env: Env) -> AsyncIterator[Queue]:
    """The test's own connection to the store (migrated before any worker starts)."""
    async with Queue(env.url) as opened:
        yield opened
