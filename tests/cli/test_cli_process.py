"""The real command line in child processes: `python -m agentqueue` and the console script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aq_cli_helpers import HERE, Invoke, ok, ok_json, run_cli

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).with_name("agentqueue")


def test_add_then_list_json(tmp_path: Path, db_url: str) -> None:
    added = run_cli(
        "jobs", "add", "send_email", "--payload", '{"to": "a@x.io"}', "--tag", "mail",
        "--url", db_url, cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    job_id = int(added.stdout.strip())

    listed = run_cli("jobs", "list", "--json", "--url", db_url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert page["next_cursor"] is None
    [job] = page["items"]
    assert job["id"] == job_id
    assert job["job_type"] == "send_email"
    assert job["payload"] == {"to": "a@x.io"}
    assert job["tags"] == ["mail"]
    assert job["status"] == "pending"


def test_user_error_in_a_real_process(tmp_path: Path, db_url: str) -> None:
    result = run_cli("jobs", "show", "7", "--url", db_url, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "error: job 7 does not exist\n"


@pytest.mark.skipif(not SCRIPT.exists(), reason="the agentqueue console script is not installed")
def test_console_script_worker_once_drains_due_jobs(
    aq: Invoke, db_url: str, tmp_path: Path
) -> None:
    version = run_cli("--version", cwd=tmp_path, command=[str(SCRIPT)])
    assert version.stdout.startswith("agentqueue ")

    names = ("Ada", "Bob")
    ids = [int(ok(aq("jobs", "add", "greet", "--payload", json.dumps({"name": n})))) for n in names]
    # The console script's sys.path does not hold the current directory: the worker must add
    # it to import the app module that lives there.
    worker = run_cli(
        "worker", "--app", "aq_cli_demo_app:queue", "--once", "--url", db_url,
        cwd=HERE, command=[str(SCRIPT)],
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout == "worker stopped after 2 job(s): complete=2\n"
    assert "started" in worker.stderr  # --log-level info logs to stderr

    for job_id, name in zip(ids, names, strict=True):
        job = ok_json(aq("jobs", "show", str(job_id), "--json"))
        assert job["status"] == "completed"
        assert job["output"] == {"greeting": f"hello {name}"}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_worker_stops_cleanly_on_sigterm(tmp_path: Path, db_url: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "AGENTQUEUE_URL"}
    command = [sys.executable, "-m", "agentqueue", "worker", "--app", "aq_cli_demo_app:queue"]
    with subprocess.Popen(
        [*command, "--url", db_url],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as worker:
        assert worker.stderr is not None
        # Wait for the worker's own start line rather than sleeping.
        seen: list[str] = []
        for line in worker.stderr:
            seen.append(line)
            if "started" in line:
                break
        assert any("started" in line for line in seen), seen
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert stdout == "worker stopped after 0 job(s)\n"
    assert "got SIGTERM" in stderr
    assert "Traceback" not in stderr
    assert "alembic" not in "".join(seen)


def test_demo_runs_its_jobs_to_completion_and_prints_their_events(
    tmp_path: Path, db_url: str
) -> None:
    done = run_cli("demo", "--rounds", "1", "--interval", "0.2", "--url", db_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    completed = [line for line in done.stdout.splitlines() if "complete " in line]
    assert {line.split()[3] for line in completed} == {
        "demo.summarize",
        "demo.thumbnail",
        "demo.flaky",
    }
    assert any("retry_later" in line for line in done.stdout.splitlines())
