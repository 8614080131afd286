"""Fixtures of the example tests: each example runs as its README says, as real processes,
from its own folder, on the test's own store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.acceptance.procs import Worker, kill_all

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Runner:
    """Starts an example's commands in its folder with AGENTQUEUE_URL set to the test's store."""

    url: str
    tmp: Path
    started: list[Worker] = field(default_factory=list[Worker])

    def environ(self, **extra: str) -> dict[str, str]:
        """A user's environment: the store, no PYTHONPATH into this checkout, no .pyc files
        left in the example's folder."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return {**env, "AGENTQUEUE_URL": self.url, "PYTHONDONTWRITEBYTECODE": "1", **extra}

    def start(self, example: str, *args: str, **env: str) -> Worker:
        """Start `python ARGS` in examples/EXAMPLE (killed at the end of the test)."""
        log = self.tmp / f"{example}-{len(self.started)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=EXAMPLES / example,
                env=self.environ(**env),
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, log)
        self.started.append(worker)
        return worker

    def run(self, example: str, *args: str, **env: str) -> str:
        """Run `python ARGS` in examples/EXAMPLE to its end; return its stdout (fail on error)."""
        done = subprocess.run(
            [sys.executable, *args],
            cwd=EXAMPLES / example,
            env=self.environ(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stderr}"
        return done.stdout

    def agentqueue(self, example: str, *args: str, **env: str) -> Worker:
        """Start `agentqueue ARGS` (e.g. a worker) in examples/EXAMPLE."""
        return self.start(example, "-m", "agentqueue", *args, **env)


@contextmanager
def running(url: str, tmp: Path) -> Iterator[Runner]:
    """A Runner whose processes are all killed when the block ends."""
    runner = Runner(url, tmp)
    try:
        yield runner
    finally:
        kill_all(runner.started)


@pytest.fixture
def runner(sqlite_url: str, tmp_path: Path) -> Iterator[Runner]:
    """Examples on a fresh SQLite file."""
    with running(sqlite_url, tmp_path) as made:
        yield made


@pytest.fixture
def postgres_runner(postgres_url: str, tmp_path: Path) -> Iterator[Runner]:
    """Examples on a fresh schema of the test PostgreSQL server."""
    with running(postgres_url, tmp_path) as made:
        yield made


async def answers(client: httpx.AsyncClient, path: str) -> bool:
    """Whether a server answers `path` at all yet (for `until`)."""
    try:
        await client.get(path)
    except httpx.TransportError:
        return False
    return True
