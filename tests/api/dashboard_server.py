"""A real dashboard to drive from a browser: `agentqueue serve` and a worker, each its own
process, on one SQLite file; and Debian's chromium, launched by playwright.

Used by the browser tests and by docs/screenshots/make.py.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Playwright

from tests.conftest import require

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "tests.api.dashboard_jobs:queue"
CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium, never a downloaded one (`playwright install` needs the internet). The
# flags keep it from reaching out to Google's services, which the machine cannot reach.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # tests run as root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_SECONDS = 30.0


def require_chromium() -> None:
    """Skip when chromium is not installed, except in CI (`make test` installs it)."""
    require(
        CHROMIUM.exists(),
        f"chromium not installed at {CHROMIUM} (`make test` installs it with apt-get)",
    )


def launch(playwright: Playwright) -> Browser:
    """Chromium, headless. Playwright gives each launch a fresh temporary user-data-dir."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Served:
    """A running server (and maybe a worker): its URL, store, barrier files and processes."""

    base_url: str
    store_url: str
    gates: Path
    tmp: Path
    processes: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def api(self, key: str | None = None) -> httpx.Client:
        """An httpx client of the server's REST API (with `key` as a bearer token)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10)

    def open_gate(self, job_id: int, barrier: int | str) -> None:
        """Let job `job_id` pass barrier `barrier` (see tests/api/dashboard_jobs.py)."""
        (self.gates / f"{job_id}-{barrier}").touch()

    def logs(self) -> str:
        """The processes' output (for failure messages)."""
        return "\n".join(
            f"--- {name} (pid {proc.pid}) ---\n{log.read_text(errors='replace')[-4000:]}"
            for name, proc, log in self.processes
        )

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `python -m agentqueue <args>` with the test app importable."""
        log = self.tmp / f"{name}.log"
        path = os.environ.get("PYTHONPATH")
        env = {
            **os.environ,
            "AGENTQUEUE_TEST_GATES": str(self.gates),
            "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT),
        }
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agentqueue", *args],
                env=env,
                cwd=self.tmp,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.processes.append((name, proc, log))
        return proc

    def until(self, what: str, check: Callable[[], object], timeout: float = START_SECONDS) -> None:
        """Poll `check()` every 50 ms until truthy; fail with the logs after `timeout`."""
        deadline = time.monotonic() + timeout
        while not check():
            dead = [name for name, proc, _ in self.processes if proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                reason = f"{dead[0]} exited" if dead else f"not within {timeout} s"
                pytest.fail(f"{what}: {reason}\n{self.logs()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after 10 s)."""
        for _, proc, _ in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _ in self.processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def serving(
    tmp: Path, *, app: str | None = APP, worker: bool = True, store_url: str | None = None
) -> Iterator[Served]:
    """`agentqueue serve --no-worker` on a free loopback port, then (with `worker`) an
    `agentqueue worker` process on the same store; both stopped at the end.

    `app` None serves the built-in demo (its own in-process worker, seeded demo jobs).
    """
    port = free_port()
    gates = tmp / "gates"
    gates.mkdir(exist_ok=True)
    url = store_url or f"sqlite:///{tmp / 'dashboard.db'}"
    served = Served(f"http://127.0.0.1:{port}", url, gates, tmp)
    serve = ["serve", "--url", url, "--port", str(port), "--log-level", "warning"]
    try:
        if app is None:
            served.start("server", *serve)
        else:
            served.start("server", *serve, "--app", app, "--no-worker")
        served.until("the server answers /healthz", lambda: _healthy(served.base_url))
        if worker and app is not None:
            # Started once the server has migrated the store, so they never race to do it.
            served.start("worker", "worker", "--url", url, "--app", app, "--concurrency", "4")
            served.until("the worker is listed", lambda: _has_worker(served))
        yield served
    finally:
        served.stop()


def _has_worker(served: Served) -> bool:
    with served.api() as api:
        answer = api.get("/api/v1/workers")
        return answer.status_code == 200 and bool(answer.json())
