"""The README's quickstart runs as printed, and every relative link of the docs resolves."""

from __future__ import annotations

import json
import logging
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentqueue.cli import app
from tests.docs.docs_helpers import README, ROOT, code_blocks, pages


@pytest.fixture
def quickstart_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh directory to run the quickstart in, with the process state it changes restored
    (cwd, sys.path and the `jobs` module of `--app jobs:queue`, logging of `worker`)."""
    monkeypatch.chdir(tmp_path)  # the relative sqlite:///app.db lands here
    monkeypatch.delenv("AGENTQUEUE_URL", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop("jobs", None)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("agentqueue").level)
    yield tmp_path
    sys.modules.pop("jobs", None)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("agentqueue").setLevel(saved[2])


def quickstart_code() -> str:
    """The README's first Python block: the quickstart `jobs.py`."""
    blocks = code_blocks("README.md", README.read_text(encoding="utf-8"))
    python = [b.text for b in blocks if b.language == "python"]
    assert python, "the README has no python block"
    return python[0]


def quickstart_cli_lines() -> list[list[str]]:
    """The argv of each `agentqueue` line of the quickstart's CLI block."""
    blocks = code_blocks("README.md", README.read_text(encoding="utf-8"))
    (block,) = [b.text for b in blocks if b.text.startswith("export AGENTQUEUE_URL=")]
    lines = [line.split(" #", 1)[0] for line in block.splitlines()[1:]]
    return [shlex.split(line)[1:] for line in lines if line.startswith("agentqueue ")]


def run_quickstart(directory: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run the README's `jobs.py` as `python jobs.py` would, in `directory`; return its output."""
    code = quickstart_code()
    assert 'Queue("sqlite:///app.db")' in code, "the quickstart should use a relative SQLite file"
    script = directory / "jobs.py"
    script.write_text(code, encoding="utf-8")
    runpy.run_path(str(script), run_name="__main__")
    return capsys.readouterr().out.strip()


def test_the_readme_quickstart_runs_a_job_to_completion_on_a_temp_sqlite_file(
    quickstart_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = run_quickstart(quickstart_dir, capsys)
    assert printed == "1 completed {'sent_to': 'ada@example.com'}"
    assert (quickstart_dir / "app.db").is_file()
    # The README shows what it prints: keep the comment in step with the run.
    assert f"# {printed}" in README.read_text(encoding="utf-8")


def test_the_readme_quickstart_cli_lines_run_against_the_same_store(
    quickstart_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_quickstart(quickstart_dir, capsys)
    monkeypatch.setenv("AGENTQUEUE_URL", "sqlite:///app.db")
    runner = CliRunner()
    outputs = {}
    for argv in quickstart_cli_lines():
        if argv[0] == "worker":
            argv = [*argv, "--once"]  # the README's worker runs until Ctrl-C
        result = runner.invoke(app, argv, prog_name="agentqueue")
        assert result.exit_code == 0, (argv, result.output)
        outputs[argv[0] if argv[0] != "jobs" else " ".join(argv[:2])] = result.stdout
    assert set(outputs) == {"jobs add", "worker", "jobs list", "stats"}
    listed = json.loads(outputs["jobs list"])
    jobs = listed["items"] if isinstance(listed, dict) else listed
    assert sorted((job["id"], job["status"]) for job in jobs) == [
        (1, "completed"),
        (2, "completed"),
    ]


_LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)\s#]+)(?:#[^)]*)?\)")


def test_every_relative_link_of_the_docs_points_at_a_file() -> None:
    broken = [
        f"{page}: {target}"
        for page, text in pages().items()
        for target in _LINK.findall(text)
        if not (ROOT / page).parent.joinpath(target).exists()
    ]
    assert broken == []


async def test_the_migration_guides_copy_script_moves_pending_jobs_to_another_store(
    tmp_path: Path,
) -> None:
    from agentqueue import JobStatus, Queue

    guide = (ROOT / "docs/guides/migrating-a-store.md").read_text(encoding="utf-8")
    (code,) = [b.text for b in code_blocks("migrating", guide) if b.language == "python"]
    namespace: dict[str, object] = {}
    exec(compile(code, "migrating-a-store.md", "exec"), namespace)
    old, new = f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    async with Queue(old) as source:
        first = await source.add_job("mail", {"to": "a"}, priority=5, tags=["x"])
        await source.add_job("mail", {"to": "b"}, idempotency_key="b-1", delay=3600)
        await source.add_job("mail", {"to": "c"}, depends_on=[first])  # blocked: not copied
    copy_pending = namespace["copy_pending"]
    assert await copy_pending(old, new) == 2  # type: ignore[operator]
    async with Queue(old) as source, Queue(new) as target:
        copies = (await target.list_jobs(order="oldest")).items
        assert [(j.payload, j.priority, j.tags) for j in copies] == [
            ({"to": "a"}, 5, ["x"]),
            ({"to": "b"}, 0, []),
        ]
        assert copies[1].idempotency_key == "b-1"
        assert all(j.status is JobStatus.PENDING for j in copies)
        left = (await source.list_jobs(status=["pending", "blocked"])).items
        assert left == [], "the originals are cancelled, their dependents with them"
