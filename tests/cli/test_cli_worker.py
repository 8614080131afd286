"""`agentqueue worker --once --app …` in this process, against the demo app."""

from __future__ import annotations

import re

from aq_cli_helpers import Invoke, ok, ok_json


def add(aq: Invoke, *args: str) -> int:
    """Add a job with the CLI and return its id."""
    return int(ok(aq("jobs", "add", *args)).strip())


def show(aq: Invoke, job_id: int) -> dict[str, object]:
    """Return a job as the CLI's JSON."""
    return ok_json(aq("jobs", "show", str(job_id), "--json"))


def test_worker_once_runs_due_jobs_and_exits(aq: Invoke, demo_app: str) -> None:
    greet = add(aq, "greet", "--payload", '{"name": "Ada"}')
    adding = add(aq, "add_numbers", "--payload", '{"a": 2, "b": 3}')
    later = add(aq, "greet", "--payload", '{"name": "Bob"}', "--delay", "3600")

    out = ok(aq("worker", "--app", demo_app, "--once"))
    assert out == "worker stopped after 2 job(s): complete=2\n"

    assert show(aq, greet)["status"] == "completed"
    assert show(aq, greet)["output"] == {"greeting": "hello Ada"}
    assert show(aq, adding)["status"] == "completed"
    assert show(aq, adding)["output"] == 5
    assert show(aq, later)["status"] == "pending"


def test_worker_once_with_nothing_due_exits_at_once(aq: Invoke, demo_app: str) -> None:
    assert ok(aq("worker", "--app", demo_app, "--once")) == "worker stopped after 0 job(s)\n"


def test_failed_job_shows_its_error_and_can_be_retried(aq: Invoke, demo_app: str) -> None:
    # Handler defaults (max_attempts=1) apply only with --app; without it, say so.
    job_id = add(aq, "explode", "--max-attempts", "1")
    assert ok(aq("worker", "--app", demo_app, "--once")) == (
        "worker stopped after 1 job(s): fail=1\n"
    )
    job = show(aq, job_id)
    assert job["status"] == "failed"
    assert "RuntimeError: boom" in str(job["last_error"])

    text = ok(aq("jobs", "show", str(job_id)))
    assert re.search(r"^failure_reason\s+handler_error$", text, re.MULTILINE)
    assert re.search(r"^error_history$", text, re.MULTILINE)
    assert re.search(r"^  attempt 1 at \S+Z: handler_error: .*boom", text, re.MULTILINE)

    assert ok(aq("jobs", "retry", str(job_id))) == f"job {job_id} is pending again\n"
    assert show(aq, job_id)["attempts"] == 0


def test_worker_serves_only_the_given_queues(aq: Invoke, demo_app: str) -> None:
    greet = add(aq, "greet", "--payload", '{"name": "Ada"}')
    math = add(aq, "add_numbers", "--payload", '{"a": 1, "b": 1}', "--app", demo_app)
    ok(aq("worker", "--app", demo_app, "--once", "--queues", "math:1"))
    assert show(aq, math)["status"] == "completed"
    assert show(aq, greet)["status"] == "pending"


def test_worker_claims_only_the_given_job_types(aq: Invoke, demo_app: str) -> None:
    greet = add(aq, "greet", "--payload", '{"name": "Ada"}')
    math = add(aq, "add_numbers", "--payload", '{"a": 1, "b": 1}')
    ok(aq("worker", "--app", demo_app, "--once", "--job-types", "greet,explode"))
    assert show(aq, greet)["status"] == "completed"
    assert show(aq, math)["status"] == "pending"


def test_worker_takes_every_setting(aq: Invoke, demo_app: str) -> None:
    job_id = add(aq, "greet", "--payload", '{"name": "Ada"}')
    out = ok(
        aq(
            "worker",
            "--app",
            demo_app,
            "--once",
            "--concurrency",
            "2",
            "--lease",
            "5",
            "--shutdown-timeout",
            "1",
            "--log-level",
            "WARNING",
        )
    )
    assert out == "worker stopped after 1 job(s): complete=1\n"
    assert show(aq, job_id)["status"] == "completed"


def test_worker_publishes_job_types_for_other_processes(aq: Invoke, demo_app: str) -> None:
    assert ok(aq("job-types")).startswith("no job types")
    ok(aq("worker", "--app", demo_app, "--once"))

    lines = ok(aq("job-types")).splitlines()
    assert lines[0].split() == ["name", "queue", "description"]
    rows = [line.split(None, 2) for line in lines[1:]]
    assert rows == [
        ["add_numbers", "math", "Add two numbers."],
        ["chatty", "default", "Log a line with secrets in it (async)."],
        ["chatty_sync", "default", "Log a line with secrets in it (in a thread)."],
        ["count_up", "default", "Report progress, then finish."],
        ["explode", "default", "Always fails."],
        ["greet", "default", "Say hello to someone."],
    ]
    infos = ok_json(aq("job-types", "--json"))
    names = ["add_numbers", "chatty", "chatty_sync", "count_up", "explode", "greet"]
    assert [info["name"] for info in infos] == names
    greet = infos[names.index("greet")]
    assert greet["payload_schema"]["required"] == ["name"]


def test_add_with_app_validates_and_applies_handler_defaults(aq: Invoke, demo_app: str) -> None:
    job_id = add(aq, "add_numbers", "--payload", '{"a": 1, "b": 2}', "--app", demo_app)
    assert show(aq, job_id)["queue"] == "math"
    exploding = add(aq, "explode", "--app", demo_app)
    assert show(aq, exploding)["max_attempts"] == 1


def test_add_without_app_uses_the_published_queue_and_defaults(aq: Invoke, demo_app: str) -> None:
    ok(aq("worker", "--app", demo_app, "--once"))  # publishes the job types
    job_id = add(aq, "add_numbers", "--payload", '{"a": 1, "b": 2}')
    assert show(aq, job_id)["queue"] == "math"
    ok(aq("worker", "--app", demo_app, "--once", "--queues", "math:1"))
    assert show(aq, job_id)["output"] == 3
    # The handler's other defaults travel with the published job type too.
    assert show(aq, add(aq, "explode"))["max_attempts"] == 1
