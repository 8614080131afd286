"""`doctor` for real (it launches the `agentqueue mcp` a config names and lists its tools, and
reports Redis function libraries of other versions) and `init` (a working app, never
overwriting, undone by --uninstall)."""

from __future__ import annotations

import asyncio
import json
import os
import runpy
import sys
from pathlib import Path

import pytest
import redis

from agentqueue import Queue
from agentqueue.installers.doctor import Finding, check_store
from agentqueue.testing import run_due_jobs
from tests.installers.conftest import Cli, tree
from tests.reliability.servers import private_redis

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """`agentqueue` of this environment on PATH, importable from this checkout."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(REPO))


@pytest.mark.slow
@pytest.mark.usefixtures("on_path")
def test_doctor_launches_each_configured_server(cli: Cli, project: Path, home: Path) -> None:
    store = f"sqlite:///{project / 'jobs.db'}"
    assert cli("migrate", "--url", store, root=None).exit_code in (0, 2)
    asyncio.run(Queue(store).open())  # migrated
    assert cli("install-mcp", "--client", "claude-code", "--url", store).exit_code == 0
    (home / "Library" / "Application Support" / "Claude").mkdir(parents=True)
    (home / ".config" / "Claude").mkdir(parents=True)
    assert (
        cli("install-mcp", "--client", "gemini", "--scope", "user", "--url", store).exit_code == 0
    )
    result = cli("doctor", "--url", store)
    assert result.exit_code == 0, result.output
    assert "ok    store" in result.output
    assert "reachable, schema up to date" in result.output
    assert "warn  workers: none alive" in result.output
    lines = [line for line in result.output.splitlines() if "tools" in line]
    assert len(lines) == 2, result.output
    assert all(line.startswith("ok    ") and "26 tools" in line for line in lines)
    assert any("claude-code (.mcp.json)" in line for line in lines)
    assert any("gemini (~/.gemini/settings.json)" in line for line in lines)


@pytest.mark.slow
@pytest.mark.usefixtures("on_path")
def test_doctor_reports_a_broken_config(cli: Cli, project: Path) -> None:
    entry = {"command": "agentqueue-does-not-exist", "args": ["mcp"]}
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": {"agentqueue": entry}}))
    result = cli("doctor", "--url", f"sqlite:///{project / 'x.db'}", "--timeout", "20")
    assert result.exit_code == 1
    assert "FAIL  store" in result.output  # never migrated: doctor does not migrate
    assert "FAIL  claude-code (.mcp.json): cannot start the server" in result.output


def test_init_scaffolds_a_working_app(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("init").exit_code == 2  # not a Python project
    (project / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    readme = "# App\n"
    (project / "README.md").write_text(readme)
    result = cli("init")
    assert result.exit_code == 0, result.output
    assert {"jobs.py", ".env.example", "README.md"} <= set(tree(project))
    assert "agentqueue worker --app jobs:queue" in (project / "README.md").read_text()
    again = cli("init")
    assert again.exit_code == 0
    assert "kept jobs.py" in again.output
    monkeypatch.setenv("AGENTQUEUE_URL", "memory://")
    namespace = runpy.run_path(str(project / "jobs.py"))
    queue: Queue = namespace["queue"]

    async def run() -> object:
        job_id = await queue.add_job("send_welcome", {"email": "ana@example.com"})
        await run_due_jobs(queue)
        job = await queue.get_job(job_id)
        await queue.close()
        return job.output if job else None

    assert asyncio.run(run()) == {"sent_to": "ana@example.com"}
    assert cli("init", "--uninstall").exit_code == 0
    assert (project / "README.md").read_text() == readme
    assert not (project / ".env.example").exists()
    assert (project / "jobs.py").exists()  # the user's code now: never deleted


def test_init_adds_a_make_target_once(cli: Cli, project: Path) -> None:
    (project / "pyproject.toml").write_text("")
    makefile = "test:\n\tpytest\n"
    (project / "Makefile").write_text(makefile)
    assert cli("init", "--module", "app.jobs").exit_code == 0
    text = (project / "Makefile").read_text()
    assert "\tagentqueue worker --app app.jobs:queue\n" in text
    assert text.startswith(makefile)
    assert (project / "app" / "jobs.py").is_file()
    assert "unchanged" in cli("init", "--module", "app.jobs").output
    assert cli("init", "--uninstall").exit_code == 0
    assert (project / "Makefile").read_text() == makefile
    (project / "Makefile").write_text("worker:\n\tmy-worker\n")
    assert "already has a worker target" in cli("init").output
    assert cli("init", "--module", "no-dashes").exit_code == 2


async def test_doctor_reports_function_libraries_of_other_agentqueue_versions() -> None:
    def other_findings(findings: list[Finding]) -> list[Finding]:
        return [found for found in findings if "other agentqueue versions" in found.detail]

    older = "agentqueue_insert_0123456789abcdef"  # as an older version's insert would be named
    with private_redis() as server:
        async with Queue(f"{server.url}?prefix=doctor") as queue:
            await queue.add_job("report")  # loads this version's own libraries
            assert other_findings(await check_store(queue)) == []
            admin = redis.Redis.from_url(server.url)
            try:
                admin.function_load(
                    f"#!lua name={older}\n"
                    f"redis.register_function('{older}', function() return 1 end)"
                )
            finally:
                admin.close()
            (found,) = other_findings(await check_store(queue))
    assert found.ok is None  # a warning: the older version may still be running somewhere
    assert found.detail.startswith("Redis holds 1 function libraries of other agentqueue")
    assert older in found.detail
    assert "FUNCTION DELETE" in found.detail
