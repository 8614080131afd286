"""The CLI's flow control: limits, paused job types, dependencies, groups, purge."""

from __future__ import annotations

from aq_cli_helpers import Invoke, ok, ok_json, user_error


def add(aq: Invoke, *args: str) -> int:
    """Add a job with the CLI and return its id."""
    return int(ok(aq("jobs", "add", *args)).strip())


def test_limits_are_set_listed_paused_and_removed(aq: Invoke) -> None:
    assert ok(aq("limits", "list")) == "no limits\n"
    ok(aq("limits", "set", "--group", "tenant-1", "--max-concurrent", "2"))
    ok(aq("limits", "set", "--job-type", "call_api", "--rate", "10", "--per", "60"))
    ok(aq("limits", "pause", "call_api"))
    rows = [line.split() for line in ok(aq("limits", "list")).splitlines()]
    assert rows[0] == ["scope", "key", "max_concurrent", "rate", "paused", "updated_at"]
    assert rows[1][:5] == ["group", "tenant-1", "2", "-", "-"]
    assert rows[2][:5] == ["job_type", "call_api", "-", "10/60s", "yes"]
    data = ok_json(aq("limits", "list", "--json"))
    assert [(d["scope"], d["key"], d["paused"]) for d in data] == [
        ("group", "tenant-1", False),
        ("job_type", "call_api", True),
    ]
    resumed = ok_json(aq("limits", "resume", "call_api", "--json"))
    assert (resumed["paused"], resumed["rate_limit"]) == (False, 10)
    cleared = ok(aq("limits", "set", "--group", "tenant-1", "--max-concurrent", "none"))
    assert cleared == "nothing limited any more\n"
    assert ok(aq("limits", "remove", "--job-type", "call_api")) == "removed\n"
    assert ok(aq("limits", "remove", "--job-type", "call_api")) == "it had no limit\n"
    assert ok(aq("limits", "list")) == "no limits\n"


def test_bad_limits_are_one_line_errors(aq: Invoke) -> None:
    assert "exactly one of job_type" in user_error(aq("limits", "set", "--max-concurrent", "1"))
    line = user_error(aq("limits", "set", "--group", "g", "--max-concurrent", "many"))
    assert line == "error: --max-concurrent takes a number or 'none', not 'many'"
    assert "rate_limit" in user_error(aq("limits", "set", "--group", "g", "--rate", "0"))
    assert ok(aq("limits", "list")) == "no limits\n"


def test_jobs_add_takes_dependencies_groups_and_dead_letters(aq: Invoke) -> None:
    first = add(aq, "extract", "--tag", "batch-9")
    second = add(
        aq,
        "load",
        "--depends-on",
        str(first),
        "--group",
        "tenant-3",
        "--dead-letter",
        "load_failed",
        "--idempotency-key",
        "k",
        "--idempotency-window",
        "60",
    )
    drain = add(aq, "report", "--depends-on-tag", "batch-9")
    job = ok_json(aq("jobs", "show", str(second), "--json"))
    assert (job["status"], job["depends_on"], job["group"]) == ("blocked", [first], "tenant-3")
    assert job["dead_letter_job_type"] == "load_failed"
    assert job["idempotency_expires_at"] is not None
    assert ok_json(aq("jobs", "show", str(drain), "--json"))["depends_on"] == [first]
    line = user_error(aq("jobs", "add", "load", "--depends-on", "999"))
    assert line == "error: depends_on names job 999, which does not exist (or was purged)"
    ok(aq("jobs", "cancel", str(first)))
    cascaded = ok_json(aq("jobs", "show", str(second), "--json"))
    assert (cascaded["status"], cascaded["failure_reason"]) == ("cancelled", "dependency_failed")


def test_jobs_purge_previews_then_deletes_finished_jobs(aq: Invoke) -> None:
    done = [add(aq, "old", "--tag", "x") for _ in range(3)]
    for job_id in done:
        ok(aq("jobs", "cancel", str(job_id)))
    kept = add(aq, "old", "--tag", "x")
    preview = ok(aq("jobs", "purge", "--tag", "x", "--dry-run")).splitlines()
    assert preview[0] == "3 job(s) would be deleted"
    assert len(preview) == 5  # the header and the three jobs
    assert ok(aq("jobs", "purge", "--tag", "x")) == "deleted 3 of 3 job(s)\n"
    assert "does not exist" in user_error(aq("jobs", "show", str(done[0])))
    assert ok_json(aq("jobs", "show", str(kept), "--json"))["status"] == "pending"
    line = user_error(aq("jobs", "purge", "--status", "pending"))
    assert "status pending does not apply here" in line
