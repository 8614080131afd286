"""`agentqueue cron …`: the schedule lifecycle from the command line, and its errors."""

from __future__ import annotations

from aq_cli_helpers import Invoke, ok, ok_json, user_error


def test_cron_lifecycle(aq: Invoke) -> None:
    added = ok_json(
        aq(
            "cron",
            "add",
            "nightly",
            "30 2 * * *",
            "send_report",
            "--payload",
            '{"kind": "nightly"}',
            "--timezone",
            "Europe/Berlin",
            "--priority",
            "4",
            "--tag",
            "reports",
            "--json",
        )
    )
    assert (added["name"], added["status"], added["timezone"]) == (
        "nightly",
        "active",
        "Europe/Berlin",
    )
    assert added["options"]["priority"] == 4
    assert added["next_run_at"] is not None
    assert "nightly" in ok(aq("cron", "list"))
    edited = ok_json(aq("cron", "edit", "nightly", "--expression", "0 3 * * *", "--json"))
    assert (edited["expression"], edited["options"]["tags"]) == ("0 3 * * *", ["reports"])
    paused = ok_json(aq("cron", "pause", "nightly", "--json"))
    assert (paused["status"], paused["next_run_at"]) == ("paused", None)
    assert ok_json(aq("cron", "list", "--status", "active", "--json")) == []
    assert ok_json(aq("cron", "resume", "nightly", "--json"))["status"] == "active"
    assert "expression" in ok(aq("cron", "show", "nightly"))
    assert ok(aq("cron", "remove", "nightly")).strip() == "removed nightly"
    assert ok_json(aq("cron", "list", "--json")) == []


def test_cron_errors_are_one_line_with_exit_code_2(aq: Invoke) -> None:
    assert "Bad minute" in user_error(aq("cron", "add", "x", "99 * * * *", "send_report"))
    assert "time zone" in user_error(
        aq("cron", "add", "x", "0 * * * *", "send_report", "--timezone", "Nowhere/City")
    )
    assert "does not exist" in user_error(aq("cron", "pause", "missing"))
    assert "does not exist" in user_error(aq("cron", "remove", "missing"))
    assert "status" in user_error(aq("cron", "list", "--status", "sleeping"))
    assert ok_json(aq("cron", "list", "--json")) == []
