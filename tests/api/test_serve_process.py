"""`agentqueue serve` as a real process: the demo, keys on a public address, a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def serving(tmp_path: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run `agentqueue serve ARGS` on a free port until it answers /healthz."""
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    command = [sys.executable, "-m", "agentqueue", "serve", "--port", str(port), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not come up:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def wait_for(check: object, timeout: float = 20) -> object:
    """Poll `check()` until truthy (fail after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()  # type: ignore[operator]
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {value!r}")
        time.sleep(0.1)


def test_serve_runs_the_demo_with_a_worker_and_stops_cleanly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    with serving(tmp_path, "--url", url) as (base, process):
        api = f"{base}/api/v1"
        types = {t["name"] for t in httpx.get(f"{api}/job-types").json()}
        assert {"demo.summarize", "demo.flaky", "demo.approval"} <= types

        def approval_waiting() -> bool:
            jobs = httpx.get(f"{api}/jobs", params={"job_type": "demo.approval"}).json()["items"]
            return bool(jobs) and jobs[0]["status"] == "waiting"

        wait_for(approval_waiting)
        [token] = httpx.get(f"{api}/tokens", params={"status": "pending"}).json()
        httpx.post(f"{api}/tokens/{token['id']}/complete", json={"data": "ship it"})
        added = httpx.post(
            f"{api}/jobs", json={"job_type": "demo.summarize", "payload": {"text": "One. Two."}}
        ).json()

        def done(job_id: int) -> object:
            job = httpx.get(f"{api}/jobs/{job_id}").json()
            return job if job["status"] == "completed" else None

        summary = wait_for(lambda: done(added["id"]))
        assert summary["output"]["summary"] == "One."  # type: ignore[index]
        approval = httpx.get(f"{api}/jobs", params={"job_type": "demo.approval"}).json()
        wait_for(lambda: done(approval["items"][0]["id"]))
        assert [w["concurrency"] for w in httpx.get(f"{api}/workers").json()] == [10]
        assert "agentqueue_jobs_completed_total" in httpx.get(f"{base}/metrics").text
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    # The demo round is not added again to a store that has jobs.
    with serving(tmp_path, "--url", url, "--no-worker") as (base, _):
        jobs = httpx.get(f"{base}/api/v1/jobs", params={"job_type": "demo.approval"}).json()
        assert len(jobs["items"]) == 1


def test_serve_on_a_public_address_needs_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    with serving(tmp_path, "--url", url, "--host", "0.0.0.0", "--no-worker") as (base, _):
        assert httpx.get(f"{base}/healthz").status_code == 200
        refused = httpx.get(f"{base}/api/v1/jobs")
        assert refused.status_code == 401
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "agentqueue",
                "api-keys",
                "create",
                "--name",
                "ci",
                "--scope",
                "operate",
                "--url",
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        key = made.stdout.strip().splitlines()[-1]
        assert key.startswith("aq_")
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{base}/api/v1/jobs", headers=headers).status_code == 200
        added = httpx.post(f"{base}/api/v1/jobs", json={"job_type": "x"}, headers=headers)
        assert added.status_code == 201
        audit = httpx.get(f"{base}/api/v1/audit", headers=headers)
        assert audit.status_code == 403  # the audit log is admin's
    # Plain text logs, one record per line: the MCP SDK's rich handler (80-column wrapping)
    # must not replace serve's own.
    [log] = tmp_path.glob("serve-*.log")
    [warning] = [line for line in log.read_text().splitlines() if "agentqueue.api.app" in line]
    assert "api-keys create" in warning, warning


def test_serve_json_logs_are_one_object_per_line_without_secrets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    secret = "aq_0123456789ab_s3cr3tS3cr3tS3cr3tS3cr3t"
    with serving(tmp_path, "--url", url, "--log-format", "json") as (base, process):
        assert httpx.get(f"{base}/healthz", params={"token": secret}).status_code == 200

        def failed_demo_job() -> bool:
            jobs = httpx.get(f"{base}/api/v1/jobs", params={"job_type": "demo.flaky"}).json()
            return any(job["attempts"] >= 1 and job["last_error"] for job in jobs["items"])

        wait_for(failed_demo_job)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    text = next(tmp_path.glob("serve-*.log")).read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert any(line["message"].startswith("agentqueue serving sqlite:") for line in lines)
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert any("/healthz?token=*** " in line["message"] for line in access)
    about_jobs = [line for line in lines if line.get("job_type") == "demo.flaky"]
    assert about_jobs
    assert all(isinstance(line["job_id"], int) and line["attempt"] >= 1 for line in about_jobs)
    assert secret not in text
