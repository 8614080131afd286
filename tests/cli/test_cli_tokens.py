"""`agentqueue tokens …` and `agentqueue supervisor --once`."""

from __future__ import annotations

from aq_cli_helpers import Invoke, ok, ok_json, user_error


def test_create_list_show_and_complete_a_token(aq: Invoke) -> None:
    token_id = ok(aq("tokens", "create", "--timeout", "3600", "--tag", "approval")).strip()
    assert token_id.startswith("tok_")
    listed = ok_json(aq("tokens", "list", "--status", "pending", "--json"))
    assert [(t["id"], t["tags"]) for t in listed] == [(token_id, ["approval"])]
    shown = ok(aq("tokens", "show", token_id))
    assert "pending" in shown

    done = ok_json(aq("tokens", "complete", token_id, "--data", '{"approved": true}', "--json"))
    assert (done["status"], done["data"]) == ("completed", {"approved": True})
    assert ok_json(aq("tokens", "list", "--status", "pending", "--json")) == []


def test_token_errors_are_one_line_with_exit_code_2(aq: Invoke) -> None:
    assert "does not exist" in user_error(aq("tokens", "complete", "tok_missing"))
    assert "does not exist" in user_error(aq("tokens", "show", "tok_missing"))
    token_id = ok(aq("tokens", "create")).strip()
    assert "--data" in user_error(aq("tokens", "complete", token_id, "--data", "{bad json"))
    ok(aq("tokens", "complete", token_id))
    assert "not pending" in user_error(aq("tokens", "complete", token_id))
    assert "status" in user_error(aq("tokens", "list", "--status", "done"))


def test_supervisor_once_reports_what_it_did(aq: Invoke) -> None:
    report = ok_json(aq("supervisor", "--once", "--json"))
    # PostgreSQL's first pass analyzes the fresh queue tables; the other stores need none.
    assert set(report.pop("analyzed")) <= {
        "aq_jobs",
        "aq_job_events",
        "aq_event_commits",
        "aq_job_tags",
    }
    assert report == {
        "rescued": [],
        "resumed": [],
        "expired_tokens": [],
        "cron_fired": [],
        "deleted_jobs": 0,
        "deleted_events": 0,
        "deleted_audit": 0,
        "forgotten_workers": 0,
    }
    assert ok(aq("supervisor", "--once")).startswith("rescued 0, resumed 0")
