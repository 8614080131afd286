"""What people expect of a CLI: an example in every command's help (that names real options),
`--json` wherever data is printed, `--version`, shell completion, `jobs watch`, the stats
table, and structured logs (JSON lines, job fields, no secrets)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from aq_cli_demo_app import SECRET_KEY
from aq_cli_helpers import HERE, Invoke, ok, ok_json, run_cli, user_error
from typer.testing import CliRunner

from agentqueue import __version__
from agentqueue.cli import app

NO_JSON = {
    "worker": "runs until stopped; its logs have --log-format json",
    "demo": "a live show of events for people",
    "serve": "a server; its logs have --log-format json",
    "mcp": "stdout is the MCP protocol",
    "install-mcp": "prints the files it changes or a diff; --check's exit code is for scripts",
    "install-rules": "prints the files it changes or a diff; --check's exit code is for scripts",
    "install-skills": "prints the files it changes or a diff; --check's exit code is for scripts",
    "init": "prints the files it creates or a diff",
}
"""Commands without --json, and why."""


def commands() -> Iterator[tuple[str, Any]]:
    """Every command and group of the typer app: (path, click command)."""

    def walk(command: Any, path: str) -> Iterator[tuple[str, Any]]:
        yield path, command
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, f"{path} {name}".strip())

    yield from walk(typer.main.get_command(app), "")


def leaves() -> list[tuple[str, Any]]:
    """The commands that do something (not groups)."""
    return [(path, c) for path, c in commands() if path and not getattr(c, "commands", None)]


def examples(command: Any) -> list[str]:
    """The example command lines of a command's help."""
    help_text = command.help or ""
    assert "Examples:" in help_text
    block = help_text.split("Examples:", 1)[1]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("agentqueue")]


def options_of(command: Any) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)}


def test_every_command_has_an_example_that_names_real_options() -> None:
    root = typer.main.get_command(app)
    by_path = dict(commands())
    missing = [path or "agentqueue" for path, command in commands() if not examples(command)]
    assert missing == []
    for path, command in commands():
        for line in examples(command):
            words = shlex.split(line.split("|")[0].split("&&")[0])[1:]
            # The longest command path the example starts with must exist.
            target, used = root, []
            while words and getattr(target, "commands", None) and words[0] in target.commands:
                used.append(words.pop(0))
                target = target.commands[used[-1]]
            assert " ".join(used) in by_path, (path, line)
            assert not getattr(target, "commands", None) or not words, (path, line)
            unknown = {w.split("=")[0] for w in words if w.startswith("--")} - options_of(target)
            assert unknown == set(), (path, line)


def test_every_command_that_prints_data_has_json() -> None:
    without = {path for path, command in leaves() if "--json" not in options_of(command)}
    assert without == set(NO_JSON)


def test_help_renders_with_its_examples(runner: CliRunner) -> None:
    # A sample of each kind (the root, a group, a command): rendering all 40 takes seconds.
    for path in ("", "jobs", "jobs watch"):
        result = runner.invoke(app, [*path.split(), "--help"], prog_name="agentqueue")
        assert result.exit_code == 0, (path, result.stdout)
        assert "Examples:" in result.stdout, path
        assert f"agentqueue {path}".strip() in result.stdout.split("Examples:")[1]


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"], prog_name="agentqueue")
    assert result.exit_code == 0
    assert result.stdout == f"agentqueue {__version__}\n"


def test_shell_completion_is_offered_and_completes_commands(runner: CliRunner) -> None:
    shown = runner.invoke(app, ["--show-completion", "bash"], prog_name="agentqueue")
    assert shown.exit_code == 0, shown.stderr
    assert "_AGENTQUEUE_COMPLETE=complete_bash" in shown.stdout
    # What bash runs on TAB: the program itself, asked through the environment.
    env = {
        **os.environ,
        "_AGENTQUEUE_COMPLETE": "complete_bash",
        "COMP_WORDS": "agentqueue jobs wa",
        "COMP_CWORD": "2",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "agentqueue"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.stdout.split() == ["watch"], completed.stderr


# -- json everywhere ----------------------------------------------------------------------------
def test_json_of_the_commands_that_had_none(aq: Invoke) -> None:
    applied = ok_json(aq("migrate", "--json"))["applied"]
    assert applied[0] == "0001_initial"
    assert ok_json(aq("migrate", "--json")) == {"applied": []}
    ok(aq("cron", "add", "nightly", "@daily", "report"))
    assert ok_json(aq("cron", "remove", "nightly", "--json")) == {"removed": "nightly"}
    ok(aq("limits", "set", "--job-type", "report", "--max-concurrent", "2"))
    assert ok_json(aq("limits", "remove", "--job-type", "report", "--json")) == {"removed": True}
    assert ok_json(aq("limits", "remove", "--job-type", "report", "--json")) == {"removed": False}
    created = ok_json(aq("api-keys", "create", "--name", "ci", "--scope", "operate", "--json"))
    assert created["name"] == "ci"
    assert created["secret"].startswith("aq_")
    revoked = ok_json(aq("api-keys", "revoke", "--name", "ci", "--json"))
    assert revoked["id"] == created["id"]
    assert revoked["revoked_at"] is not None
    assert "secret" not in revoked


def test_doctor_json(aq: Invoke, tmp_path: Path) -> None:
    ok(aq("migrate"))  # doctor reports a schema that is behind; it never migrates
    result = aq("doctor", "--json", "--root", str(tmp_path))
    findings = json.loads(result.stdout)
    assert {"ok", "subject", "detail"} <= set(findings[0])
    assert any(f["ok"] is True for f in findings)  # the store answers
    assert result.exit_code == (1 if any(f["ok"] is False for f in findings) else 0)


# -- stats --------------------------------------------------------------------------------------
def test_stats_never_folds_a_long_job_type_in_a_pipe(aq: Invoke) -> None:
    name = "send_the_quarterly_report_to_every_regional_office"
    ok(aq("jobs", "add", name))
    lines = ok(aq("stats")).splitlines()
    assert lines[0].split()[:2] == ["job_type", "blocked"]
    assert set(lines[1]) == {"─"}
    assert lines[2].split() == [name, "0", "1", "0", "0", "0", "0", "0"]
    assert lines[-1].split() == ["(all)", "0", "1", "0", "0", "0", "0", "0"]


# -- jobs watch ---------------------------------------------------------------------------------
def test_watch_a_finished_job_replays_it_and_exits_0(aq: Invoke, demo_app: str) -> None:
    job_id = ok(aq("jobs", "add", "count_up")).strip()
    ok(aq("worker", "--app", demo_app, "--once", "--log-level", "error"))
    result = aq("jobs", "watch", job_id)
    assert result.exit_code == 0, result.stderr
    assert "100%" in result.stdout
    assert f"job {job_id} count_up · completed" in result.stdout
    assert result.stdout.splitlines()[-1] == f"job {job_id} completed"


def test_watch_exit_codes_say_how_the_job_ended(aq: Invoke, demo_app: str) -> None:
    failed = ok(aq("jobs", "add", "explode", "--max-attempts", "1")).strip()
    ok(aq("worker", "--app", demo_app, "--once", "--log-level", "error"))
    result = aq("jobs", "watch", failed)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == f"job {failed} failed: RuntimeError: boom"

    cancelled = ok(aq("jobs", "add", "greet", "--payload", '{"name": "x"}')).strip()
    ok(aq("jobs", "cancel", cancelled))
    assert aq("jobs", "watch", cancelled).exit_code == 3

    assert user_error(aq("jobs", "watch", "999")) == "error: job 999 does not exist"

    pending = ok(aq("jobs", "add", "greet", "--payload", '{"name": "y"}')).strip()
    waited = aq("jobs", "watch", pending, "--timeout", "0.3", "--json")
    assert waited.exit_code == 4
    [event] = [json.loads(line) for line in waited.stdout.splitlines()]
    assert (event["type"], event["status"]) == ("added", "pending")


def test_watch_json_follows_a_job_live_in_a_real_process(
    aq: Invoke, db_url: str, demo_app: str
) -> None:
    job_id = ok(aq("jobs", "add", "count_up")).strip()
    env = {key: value for key, value in os.environ.items() if key != "AGENTQUEUE_URL"}
    command = [sys.executable, "-m", "agentqueue", "jobs", "watch", job_id, "--json"]
    with subprocess.Popen(
        [*command, "--url", db_url], env=env, stdout=subprocess.PIPE, text=True
    ) as watcher:
        assert watcher.stdout is not None
        first = json.loads(watcher.stdout.readline())  # printed before any worker ran
        assert (first["job_id"], first["type"]) == (int(job_id), "added")
        ok(aq("worker", "--app", demo_app, "--once", "--log-level", "error"))
        rest = [json.loads(line) for line in watcher.stdout]
        assert watcher.wait(30) == 0
    kinds = [event["type"] for event in rest]
    assert kinds[0] == "claim"
    assert kinds[-1] == "complete"
    assert set(kinds) <= {"claim", "progress", "complete"}
    assert all(e["data"]["progress"] == 50 for e in rest if e["type"] == "progress")


# -- logs ---------------------------------------------------------------------------------------
def test_worker_json_logs_name_the_job_and_hide_secrets(
    aq: Invoke, db_url: str, demo_app: str
) -> None:
    ids = {name: ok(aq("jobs", "add", name)).strip() for name in ("chatty", "chatty_sync")}
    ids["explode"] = ok(aq("jobs", "add", "explode", "--max-attempts", "1")).strip()
    worker = run_cli(
        "worker", "--app", demo_app, "--once", "--url", db_url, "--log-format", "json", cwd=HERE
    )
    assert worker.returncode == 0, worker.stderr
    lines = [json.loads(line) for line in worker.stderr.splitlines()]  # every line is JSON
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    by_job = {str(line["job_id"]): line for line in lines if "job_id" in line}
    assert set(by_job) == set(ids.values())
    for name, job_id in ids.items():
        assert (by_job[job_id]["job_type"], by_job[job_id]["attempt"]) == (name, 1)
    assert by_job[ids["chatty"]]["message"] == (
        "connecting to postgresql://app:***@db.internal/jobs with key aq_0123456789ab_***"
    )
    assert by_job[ids["chatty_sync"]]["message"] == "calling https://api.example.com/?token=***"
    assert "boom" in by_job[ids["explode"]]["message"]
    assert "hunter2" not in worker.stderr
    assert SECRET_KEY not in worker.stderr


def test_text_logs_append_the_job_fields_and_the_env_picks_json(
    aq: Invoke, demo_app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = ok(aq("jobs", "add", "chatty")).strip()
    # Asked for (pytest's own log handlers are installed: without a format they would stay).
    text = aq("worker", "--app", demo_app, "--once", "--log-format", "text")
    assert text.exit_code == 0, text.stderr
    [line] = [line for line in text.stderr.splitlines() if "connecting to" in line]
    assert line.endswith(f"job={job_id} type=chatty attempt=1")
    assert "postgresql://app:***@db.internal/jobs" in line

    ok(aq("jobs", "add", "chatty"))
    monkeypatch.setenv("AGENTQUEUE_LOG_FORMAT", "json")
    env_json = aq("worker", "--app", demo_app, "--once")
    assert env_json.exit_code == 0, env_json.stderr
    lines = [json.loads(line) for line in env_json.stderr.splitlines()]
    assert [line["job_type"] for line in lines if "job_id" in line] == ["chatty"]


def test_an_unknown_log_format_is_a_user_error(aq: Invoke, demo_app: str) -> None:
    result = aq("worker", "--app", demo_app, "--once", "--log-format", "xml")
    assert result.exit_code == 2
    assert result.stderr == "error: --log-format 'xml' is not one of text, json\n"
