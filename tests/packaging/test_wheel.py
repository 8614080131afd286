"""The wheel as a user gets it: built and installed by the Dockerfile's own steps into a fresh
venv (see image.py), then its files, its CLI, `serve` as the image runs it (with the image's
health check), `mcp` over stdio with the SDK's client, and `install-skills` from the package.

`once`: building and installing takes about a minute and cannot flake by timing, so CI runs it
in its first pass only."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

import agentqueue
from tests.acceptance.procs import Worker, until
from tests.api.conftest import free_port
from tests.packaging import image

# Building the wheels and the venv is part of the first test (about a minute, more on a busy
# machine), and another test process may wait on that build: more than the 120 s default.
pytestmark = [pytest.mark.once, pytest.mark.slow, pytest.mark.timeout(600)]


def shipped(source: str, packaged: str) -> dict[str, str]:
    """Each file under the repository's `source` folder and its name inside the wheel."""
    root = image.REPO / source
    return {
        f"{source}/{path.relative_to(root).as_posix()}": (
            f"{packaged}/{path.relative_to(root).as_posix()}"
        )
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def run(installed: image.Installed, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the venv's `agentqueue ARGS` (never this checkout's code)."""
    return subprocess.run(
        [str(installed.bin("agentqueue")), *args],
        cwd=cwd,
        env=image.clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_wheel_carries_the_rules_skills_docs_and_type_marker(
    installed: image.Installed,
) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    expected = {
        **shipped("ai_rules", "agentqueue/_ai_rules"),
        **shipped("skills", "agentqueue/_skills"),
        **shipped("docs", "agentqueue/_docs"),
        **shipped("agentqueue/api/dashboard", "agentqueue/api/dashboard"),
        **shipped("agentqueue/backends/redis/scripts", "agentqueue/backends/redis/scripts"),
        "README.md": "agentqueue/_docs/README.md",
        "agentqueue/py.typed": "agentqueue/py.typed",
    }
    assert any(name.endswith("/SKILL.md") for name in expected.values())
    missing = {source: name for source, name in expected.items() if name not in names}
    assert not missing, f"the wheel lacks {missing}"
    assert not [name for name in names if name.startswith(("tests/", "bench/", "examples/"))]


def test_the_installed_package_is_the_wheel_with_every_store_driver(
    installed: image.Installed, tmp_path: Path
) -> None:
    version = run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"agentqueue {agentqueue.__version__}"
    probe = subprocess.run(
        [
            str(installed.bin("python")),
            "-c",
            "import agentqueue, asyncpg, redis, hiredis; print(agentqueue.__file__)",
        ],
        cwd=tmp_path,
        env=image.clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(installed.venv), "not this checkout's code"
    consistent = subprocess.run(
        [str(installed.bin("python")), "-m", "pip", "check"],
        env=image.clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert consistent.returncode == 0, consistent.stdout


def start(
    installed: image.Installed, command: list[str], *, cwd: Path, env: dict[str, str], log: Path
) -> Worker:
    """Start a command of the venv, its output going to `log`."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(installed.bin(command[0])), *command[1:]],
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Worker(process, log)


async def test_the_image_command_serves_and_its_health_check_passes(
    installed: image.Installed, tmp_path: Path
) -> None:
    _, runtime = image.build_and_runtime()
    mapped = image.container_paths(runtime, tmp_path)
    env = image.runtime_environ(runtime, mapped, installed)
    # Another test may hold the image's port: the same command on a free one.
    port, image_port = str(free_port()), runtime.cmd[runtime.cmd.index("--port") + 1]
    command = [port if word == image_port else word for word in runtime.cmd]
    probe = [word.replace(f":{image_port}/", f":{port}/") for word in runtime.healthcheck]
    probe[0] = str(installed.bin(probe[0]))
    server = start(
        installed, command, cwd=mapped[runtime.workdir], env=env, log=tmp_path / "serve.log"
    )
    process = server.process

    def health_check() -> int:
        return subprocess.run(probe, env=env, capture_output=True, timeout=30).returncode

    try:
        await until(
            "the image's health check passes",
            lambda: health_check() == 0,
            timeout=60,
            workers=[server],
        )
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as client:
            # 0.0.0.0 and no key yet: refused, and the log says how to make one.
            assert (await client.get("/api/v1/jobs")).status_code == 401
            # (Whitespace folded: a rich log handler may wrap the line.)
            assert "api-keys create" in " ".join(server.output().split())
            made = run(
                installed,
                "api-keys",
                "create",
                "--name",
                "ops",
                "--scope",
                "read",
                "--url",
                env["AGENTQUEUE_URL"],
                cwd=tmp_path,
            )
            assert made.returncode == 0, made.stderr
            headers = {"Authorization": f"Bearer {made.stdout.split()[-1]}"}
            listed = await client.get("/api/v1/jobs", headers=headers)
            assert listed.status_code == 200
            # The image's default command runs the demo: seeded jobs, and its worker runs them.
            kinds = {job["job_type"] for job in listed.json()["items"]}
            assert "demo.summarize" in kinds

            async def a_demo_job_completed() -> bool:
                done = await client.get(
                    "/api/v1/jobs", params={"status": "completed"}, headers=headers
                )
                return bool(done.json()["items"])

            await until("a demo job completes", a_demo_job_completed, timeout=30, workers=[server])
        # The SQLite file is on the volume, not in the working directory.
        assert (mapped["/data"] / "agentqueue.db").exists()
        process.send_signal(signal.SIGTERM)
        assert server.wait_exit(30) == 0, server.output()
        assert health_check() != 0, "the check must fail when nothing answers"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def test_the_installed_mcp_server_lists_its_tools_and_finds_its_docs(
    installed: image.Installed, tmp_path: Path
) -> None:
    server = StdioServerParameters(
        command=str(installed.bin("agentqueue")),
        args=["mcp", "--url", f"sqlite:///{tmp_path / 'mcp.db'}"],
        env=image.clean_environ(),
        cwd=tmp_path,
    )
    async with asyncio.timeout(60), Client(server) as agent:
        names = {tool.name for tool in (await agent.list_tools()).tools}
        assert {"add_job", "get_job", "wait_for_job", "explain_job", "search_docs"} <= names
        found = await agent.call_tool("search_docs", {"query": "approval token"})
        assert not found.is_error, found.content
        assert "agentqueue://docs/" in str(found.structured_content)
        # The pages come from the package's _docs (this venv has no checkout to fall back on).
        pages = {str(r.uri) for r in (await agent.list_resources()).resources}
        assert "agentqueue://docs/architecture" in pages


def test_install_skills_dry_run_from_the_wheel_writes_nothing(
    installed: image.Installed, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    preview = run(installed, "install-skills", "--client", "claude-code", "--dry-run", cwd=project)
    assert preview.returncode == 0, preview.stderr
    skills = sorted(path.name for path in (image.REPO / "skills").iterdir())
    for name in skills:
        assert f"+++ b/.claude/skills/{name}/SKILL.md" in preview.stdout
    assert list(project.iterdir()) == [], "--dry-run must not write"
