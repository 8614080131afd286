"""`agentqueue --version`, `migrate`, `stats` and the root help."""

from __future__ import annotations

import re

from aq_cli_helpers import Invoke, ok, ok_json

import agentqueue
from agentqueue.backends.sql import migrations


def test_version(aq: Invoke) -> None:
    assert ok(aq("--version", url=None)) == f"agentqueue {agentqueue.__version__}\n"


def test_no_arguments_show_the_commands(aq: Invoke) -> None:
    result = aq(url=None)
    text = result.stdout + result.stderr
    for command in ("jobs", "worker", "migrate", "stats", "job-types"):
        assert re.search(rf"\b{command}\b", text), command


def test_help_of_every_command(aq: Invoke) -> None:
    for command in (["worker"], ["migrate"], ["stats"], ["job-types"], ["jobs", "add"]):
        assert "--url" in ok(aq(*command, "--help", url=None)), command


def test_migrate_twice(aq: Invoke) -> None:
    expected = [f"applied {m.VERSION:04d}_{m.NAME}" for m in migrations.MIGRATIONS]
    assert expected[0] == "applied 0001_initial"
    assert ok(aq("migrate")).splitlines() == expected
    assert ok(aq("migrate")) == "up to date\n"


def test_migrate_after_other_commands_is_up_to_date(aq: Invoke) -> None:
    ok(aq("jobs", "list"))  # any command migrates a fresh store, as Queue does
    assert ok(aq("migrate")) == "up to date\n"


def test_stats_table(aq: Invoke) -> None:
    for job_type in ("send_email", "send_email", "resize"):
        ok(aq("jobs", "add", job_type))
    ok(aq("jobs", "cancel", "1"))
    lines = ok(aq("stats")).splitlines()
    assert [line.split() for line in lines if not line.startswith("─")] == [
        [
            "job_type",
            "blocked",
            "pending",
            "processing",
            "waiting",
            "completed",
            "failed",
            "cancelled",
        ],
        ["resize", "0", "1", "0", "0", "0", "0", "0"],
        ["send_email", "0", "1", "0", "0", "0", "0", "1"],
        ["(all)", "0", "2", "0", "0", "0", "0", "1"],
    ]


def test_stats_json(aq: Invoke) -> None:
    ok(aq("jobs", "add", "send_email"))
    ok(aq("jobs", "add", "send_email"))
    ok(aq("jobs", "cancel", "2"))
    data = ok_json(aq("stats", "--json"))
    assert data["by_type"]["send_email"]["pending"] == 1
    assert data["by_type"]["send_email"]["cancelled"] == 1
    assert data["totals"]["pending"] == 1
    assert data["totals"]["cancelled"] == 1


def test_stats_of_an_empty_store(aq: Invoke) -> None:
    lines = ok(aq("stats")).splitlines()
    assert lines[-1].split() == ["(all)", "0", "0", "0", "0", "0", "0", "0"]
    assert ok_json(aq("job-types", "--json")) == []
