"""Every user mistake: exit code 2 and one line `error: …` on stderr that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from aq_cli_helpers import Invoke, ok, user_error

from tests.conftest import POSTGRES_URL, postgres_reachable, require_server


def add(aq: Invoke, *args: str) -> int:
    """Add a job with the CLI and return its id."""
    return int(ok(aq("jobs", "add", *args)).strip())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["jobs", "add", "work", "--payload", "{bad json"],
            "error: --payload is not valid JSON: Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1)",
        ),
        (
            ["jobs", "add", "work", "--payload", '{"a": 1'],
            "error: --payload is not valid JSON: Expecting ',' delimiter: line 1 column 8 (char 7)",
        ),
        (
            ["jobs", "add", "work", "--run-at", "2031-01-01T09:00:00"],
            "error: --run-at '2031-01-01T09:00:00' has no time zone: "
            "add Z (UTC) or an offset such as +02:00",
        ),
        (
            ["jobs", "add", "work", "--run-at", "next tuesday"],
            "error: --run-at 'next tuesday' is not an ISO 8601 time, e.g. 2030-01-31T09:00:00Z",
        ),
        (
            ["jobs", "add", "work", "--delay", "5", "--run-at", "2031-01-01T09:00:00Z"],
            "error: give --delay or --run-at, not both",
        ),
        (["jobs", "show", "404"], "error: job 404 does not exist"),
        (["jobs", "cancel", "404"], "error: job 404 does not exist"),
        (["jobs", "retry", "404"], "error: job 404 does not exist"),
        (["jobs", "events", "404"], "error: job 404 does not exist"),
        (["jobs", "edit", "404", "--priority", "1"], "error: job 404 does not exist"),
        (
            ["jobs", "edit", "1", "--run-at", "2031-01-01 09:00"],
            "error: --run-at '2031-01-01 09:00' has no time zone: "
            "add Z (UTC) or an offset such as +02:00",
        ),
        (
            ["jobs", "edit", "1"],
            "error: nothing to change: give --payload, --priority, --run-at or --tag",
        ),
        (
            ["jobs", "list", "--cursor", "abc"],
            "error: bad cursor 'abc': pass the next_cursor of a previous page",
        ),
        (["jobs", "list", "--limit", "0"], "error: limit must be from 1 to 1000, not 0"),
    ],
)
def test_bad_input_is_one_line(aq: Invoke, args: list[str], expected: str) -> None:
    assert user_error(aq(*args)) == expected


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["jobs", "list", "--status", "done"], "Invalid value for '--status'"),
        (["jobs", "list", "--tag-mode", "some"], "Invalid value for '--tag-mode'"),
        (["jobs", "show", "abc"], "Invalid value for 'job_id'"),
        (["jobs", "add", "work", "--priority", "high"], "Invalid value for '--priority'"),
        (["jobs", "add"], "Missing argument 'job_type'."),
        (["jobs", "explode"], "No such command 'explode'."),
        (["launch"], "No such command 'launch'."),
    ],
)
def test_usage_errors_are_one_line_too(aq: Invoke, args: list[str], fragment: str) -> None:
    line = user_error(aq(*args))
    assert fragment in line
    assert line.endswith("--help')")


def test_unknown_root_option_is_one_line(aq: Invoke) -> None:
    line = user_error(aq("--colour", url=None))
    assert line == "error: No such option: --colour (see 'agentqueue --help')"


def test_payload_file_that_does_not_exist(aq: Invoke, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    line = user_error(aq("jobs", "add", "work", "--payload", f"@{missing}"))
    assert line == f"error: --payload: cannot read {str(missing)!r}: No such file or directory"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://localhost/jobs", "error: unsupported store URL 'mysql://localhost/jobs': use "),
        ("not a url", "error: unsupported store URL 'not a url': use "),
        (
            "sqlite:///no/such/folder/q.db",
            "error: cannot create SQLite database 'no/such/folder/q.db': folder ",
        ),
        ("sqlite:///q.db?synchronous=maybe", "error: synchronous must be one of "),
    ],
)
def test_bad_url(aq: Invoke, url: str, expected: str) -> None:
    assert user_error(aq("jobs", "list", url=url)).startswith(expected)


def test_bad_url_option_on_migrate(aq: Invoke) -> None:
    line = user_error(aq("migrate", url="mysql://localhost/jobs"))
    assert line.startswith("error: unsupported store URL 'mysql://localhost/jobs'")


def test_invalid_transitions(aq: Invoke) -> None:
    job_id = add(aq, "work")
    assert user_error(aq("jobs", "retry", str(job_id))) == (
        f"error: cannot retry job {job_id}: it is pending; retry applies to cancelled, failed jobs"
    )
    ok(aq("jobs", "cancel", str(job_id)))
    assert user_error(aq("jobs", "cancel", str(job_id))) == (
        f"error: cannot cancel job {job_id}: it is cancelled; "
        "cancel applies to blocked, pending, processing, waiting jobs"
    )
    line = user_error(aq("jobs", "edit", str(job_id), "--priority", "3"))
    assert line.startswith(f"error: cannot edit job {job_id}: it is cancelled")


def test_invalid_option_values_name_the_field(aq: Invoke) -> None:
    line = user_error(aq("jobs", "add", "work", "--max-attempts", "0"))
    assert line.startswith("error: invalid job: max_attempts: ")
    line = user_error(aq("jobs", "add", "bad type!"))
    assert line.startswith("error: invalid job: job_type: ")


def test_payload_invalid_with_app_names_the_field(aq: Invoke, demo_app: str) -> None:
    line = user_error(aq("jobs", "add", "greet", "--payload", '{"nam": "Ada"}', "--app", demo_app))
    assert line == "error: invalid payload for job type 'greet': name: Field required"
    assert ok(aq("jobs", "list")) == "no jobs\n"


def test_payload_invalid_from_the_published_schema(aq: Invoke, demo_app: str) -> None:
    ok(aq("worker", "--app", demo_app, "--once"))  # publishes greet's schema into the store
    line = user_error(aq("jobs", "add", "greet", "--payload", '{"name": 42}'))
    assert line == "error: invalid payload for job type 'greet': name: 42 is not of type 'string'"
    job_id = add(aq, "greet", "--payload", '{"name": "Ada"}')
    line = user_error(aq("jobs", "edit", str(job_id), "--payload", "{}"))
    assert (
        line
        == "error: invalid payload for job type 'greet': (payload): 'name' is a required property"
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("aq_cli_demo_app", "must be module:attribute, e.g. myapp.jobs:queue"),
        (
            "no_such_module_xyz:queue",
            "cannot import 'no_such_module_xyz': ModuleNotFoundError: "
            "No module named 'no_such_module_xyz'",
        ),
        ("aq_cli_demo_app:missing", "module 'aq_cli_demo_app' has no attribute 'missing'"),
        ("aq_cli_demo_app:not_a_queue", "is a str, not an agentqueue Queue"),
    ],
)
def test_bad_app(aq: Invoke, demo_app: str, spec: str, expected: str) -> None:
    for args in (["worker", "--once", "--app", spec], ["jobs", "add", "greet", "--app", spec]):
        line = user_error(aq(*args))
        assert line.startswith(f"error: --app {spec!r}")
        assert line.endswith(expected)


def test_app_whose_import_raises(
    aq: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "aq_cli_broken_app.py").write_text(
        "raise RuntimeError('missing OPENAI_API_KEY')\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)  # --app imports from the current directory
    line = user_error(aq("worker", "--once", "--app", "aq_cli_broken_app:queue"))
    assert line == (
        "error: --app 'aq_cli_broken_app:queue': cannot import 'aq_cli_broken_app': "
        "RuntimeError: missing OPENAI_API_KEY"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--concurrency", "2", "--queues", "ai:1"],
            "error: give --concurrency or --queues, not both",
        ),
        (["--concurrency", "0"], "error: --concurrency must be at least 1, not 0"),
        (
            ["--queues", "ai:two"],
            "error: bad queue entry 'ai:two': write name:concurrency, e.g. ai:2,default:10",
        ),
        (["--lease", "0"], "error: --lease must be a positive number of seconds, not 0"),
        (["--shutdown-timeout", "-1"], "error: --shutdown-timeout must not be negative, not -1"),
        (
            ["--log-level", "loud"],
            "error: --log-level 'loud' is not one of debug, info, warning, error",
        ),
    ],
)
def test_bad_worker_settings(aq: Invoke, demo_app: str, args: list[str], expected: str) -> None:
    assert user_error(aq("worker", "--once", "--app", demo_app, *args)) == expected


def test_worker_needs_app(aq: Invoke) -> None:
    assert "Missing option '--app'" in user_error(aq("worker", "--once"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:1/test",
            "error: PostgreSQL unreachable: [Errno 111] Connect call failed ('127.0.0.1', 1)",
        ),
        ("redis://127.0.0.1:1/0", "error: cannot reach Redis at 127.0.0.1:1/0"),
        ("mysql://x@y/z", "error: unsupported store URL 'mysql://x@y/z'"),
        (
            "postgresql://postgres@127.0.0.1/test?schema=Bad",
            "error: schema must be a lowercase SQL identifier",
        ),
    ],
)
def test_a_store_that_cannot_be_reached_or_named_is_one_line(
    aq: Invoke, url: str, expected: str
) -> None:
    assert user_error(aq("migrate", url=url)).startswith(expected)


def test_a_postgres_login_that_is_refused_is_one_line(aq: Invoke) -> None:
    require_server("PostgreSQL", postgres_reachable(), POSTGRES_URL)
    refused = POSTGRES_URL.replace("postgres@", "no_such_role_aq@", 1)
    assert user_error(aq("stats", url=refused)) == (
        'error: PostgreSQL error: role "no_such_role_aq" does not exist'
    )
