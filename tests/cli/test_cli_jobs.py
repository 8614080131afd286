"""`agentqueue jobs …` on the happy path: add, list, show, cancel, retry, events, edit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aq_cli_helpers import Invoke, ok, ok_json


def add(aq: Invoke, *args: str) -> int:
    """Add a job with the CLI and return its id."""
    return int(ok(aq("jobs", "add", *args)).strip())


def test_add_prints_the_id_and_show_json_has_every_option(aq: Invoke) -> None:
    first = add(aq, "send_email", "--payload", '{"to": "a@x.io"}')
    job_id = add(
        aq,
        "send_email",
        "--payload",
        '{"to": "b@x.io"}',
        "--priority",
        "7",
        "--tag",
        "mail",
        "--tag",
        "urgent,vip",
        "--queue",
        "mailers",
        "--max-attempts",
        "5",
        "--timeout",
        "30",
        "--idempotency-key",
        "welcome-b",
    )
    assert job_id == first + 1

    job = ok_json(aq("jobs", "show", str(job_id), "--json"))
    assert job["id"] == job_id
    assert job["job_type"] == "send_email"
    assert job["payload"] == {"to": "b@x.io"}
    assert job["status"] == "pending"
    assert job["priority"] == 7
    assert job["tags"] == ["mail", "urgent", "vip"]
    assert job["queue"] == "mailers"
    assert job["max_attempts"] == 5
    assert job["timeout"] == 30.0
    assert job["idempotency_key"] == "welcome-b"


def test_add_json_prints_the_stored_job(aq: Invoke) -> None:
    added = ok_json(aq("jobs", "add", "resize", "--payload", "[1, 2]", "--json"))
    shown = ok_json(aq("jobs", "show", str(added["id"]), "--json"))
    assert added == shown
    assert added["payload"] == [1, 2]


def test_add_without_payload_stores_an_empty_object(aq: Invoke) -> None:
    job_id = add(aq, "tick")
    assert ok_json(aq("jobs", "show", str(job_id), "--json"))["payload"] == {}


def test_add_reads_the_payload_from_a_file(aq: Invoke, tmp_path: Path) -> None:
    payload_file = tmp_path / "payload.json"
    payload_file.write_text('{"prompt": "summarise", "n": 3}', encoding="utf-8")
    job_id = add(aq, "summarise", "--payload", f"@{payload_file}")
    job = ok_json(aq("jobs", "show", str(job_id), "--json"))
    assert job["payload"] == {"prompt": "summarise", "n": 3}


def test_same_idempotency_key_returns_the_first_id(aq: Invoke) -> None:
    first = add(aq, "charge", "--idempotency-key", "order-1")
    again = add(aq, "charge", "--idempotency-key", "order-1")
    assert again == first
    page = ok_json(aq("jobs", "list", "--json"))
    assert [job["id"] for job in page["items"]] == [first]


def test_delay_and_run_at_set_the_run_time(aq: Invoke) -> None:
    before = datetime.now(UTC)
    delayed = add(aq, "later", "--delay", "3600")
    at_utc = add(aq, "later", "--run-at", "2031-02-03T04:05:06Z")
    at_offset = add(aq, "later", "--run-at", "2031-02-03T06:05:06+02:00")

    def run_at(job_id: int) -> datetime:
        job = ok_json(aq("jobs", "show", str(job_id), "--json"))
        return datetime.fromisoformat(job["run_at"])

    assert run_at(delayed) >= before + timedelta(seconds=3600)
    expected = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert run_at(at_utc) == expected
    assert run_at(at_offset) == expected


def test_list_prints_an_aligned_table(aq: Invoke) -> None:
    one = add(aq, "send_email", "--tag", "mail", "--priority", "3")
    two = add(aq, "resize_image", "--queue", "images")
    lines = ok(aq("jobs", "list")).splitlines()
    assert lines[0].split() == [
        "id",
        "status",
        "job_type",
        "queue",
        "priority",
        "attempts",
        "run_at",
        "tags",
    ]
    # Newest first; columns line up under their headers.
    assert lines[1].split()[:6] == [str(two), "pending", "resize_image", "images", "0", "0/3"]
    assert lines[1].split()[7] == "-"
    assert lines[2].split()[:6] == [str(one), "pending", "send_email", "default", "3", "0/3"]
    assert lines[2].split()[7] == "mail"
    column = lines[0].index("job_type")
    assert lines[1][column:].startswith("resize_image")
    assert lines[2][column:].startswith("send_email")
    assert len(lines) == 3


def test_list_of_an_empty_store_says_so(aq: Invoke) -> None:
    assert ok(aq("jobs", "list")) == "no jobs\n"
    assert ok_json(aq("jobs", "list", "--json")) == {"items": [], "next_cursor": None}


def test_list_json_matches_show_json(aq: Invoke) -> None:
    ids = [add(aq, "work", "--payload", f'{{"n": {n}}}') for n in range(3)]
    page = ok_json(aq("jobs", "list", "--json"))
    assert page["next_cursor"] is None
    assert [job["id"] for job in page["items"]] == ids[::-1]
    for job in page["items"]:
        assert job == ok_json(aq("jobs", "show", str(job["id"]), "--json"))


def test_list_pages_with_cursor(aq: Invoke) -> None:
    ids = [add(aq, "work") for _ in range(5)]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        args = ["jobs", "list", "--limit", "2", "--oldest", "--json"]
        page = ok_json(aq(*args, *(["--cursor", cursor] if cursor else [])))
        seen += [job["id"] for job in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert pages == 3


def test_list_table_names_the_next_cursor(aq: Invoke) -> None:
    ids = [add(aq, "work") for _ in range(3)]
    lines = ok(aq("jobs", "list", "--limit", "2")).splitlines()
    assert lines[-1] == f"more: --cursor {ids[1]}"
    rest = ok(aq("jobs", "list", "--limit", "2", "--cursor", str(ids[1]))).splitlines()
    assert [line.split()[0] for line in rest[1:]] == [str(ids[0])]


def test_list_filters_by_status_job_type_and_queue(aq: Invoke) -> None:
    email = add(aq, "send_email")
    image = add(aq, "resize_image", "--queue", "images")
    cancelled = add(aq, "send_email")
    ok(aq("jobs", "cancel", str(cancelled)))

    def ids(*filters: str) -> list[int]:
        page = ok_json(aq("jobs", "list", "--oldest", "--json", *filters))
        return [job["id"] for job in page["items"]]

    assert ids("--status", "pending") == [email, image]
    assert ids("--status", "cancelled") == [cancelled]
    assert ids("--status", "pending", "--status", "cancelled") == [email, image, cancelled]
    assert ids("--job-type", "send_email") == [email, cancelled]
    assert ids("--job-type", "send_email", "--status", "pending") == [email]
    assert ids("--queue", "images") == [image]
    assert ids("--queue", "images", "--queue", "default") == [email, image, cancelled]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("any", ["a", "ab", "abc"]),
        ("all", ["ab", "abc"]),
        ("exact", ["ab"]),
        ("none", ["c", "untagged"]),
    ],
)
def test_list_filters_by_tags(aq: Invoke, mode: str, expected: list[str]) -> None:
    jobs = {
        "a": add(aq, "work", "--tag", "a"),
        "ab": add(aq, "work", "--tag", "a", "--tag", "b"),
        "abc": add(aq, "work", "--tag", "a,b,c"),
        "c": add(aq, "work", "--tag", "c"),
        "untagged": add(aq, "work"),
    }
    names = {job_id: name for name, job_id in jobs.items()}
    page = ok_json(
        aq("jobs", "list", "--tag", "a", "--tag", "b", "--tag-mode", mode, "--oldest", "--json")
        if mode != "any"
        else aq("jobs", "list", "--tag", "a", "--oldest", "--json")
    )
    assert [names[job["id"]] for job in page["items"]] == expected


def test_show_prints_every_field(aq: Invoke) -> None:
    job_id = add(aq, "send_email", "--payload", '{"to": "a@x.io"}', "--tag", "mail,vip")
    lines = ok(aq("jobs", "show", str(job_id))).splitlines()
    fields = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    assert fields["id"] == str(job_id)
    assert fields["status"] == "pending"
    assert fields["job_type"] == "send_email"
    assert fields["queue"] == "default"
    assert fields["payload"] == '{"to":"a@x.io"}'
    assert fields["tags"] == "mail, vip"
    assert fields["attempts"] == "0"
    assert fields["max_attempts"] == "3"
    assert fields["started_at"] == "-"
    assert fields["created_at"].endswith("Z")
    # Values start in one column.
    assert len({line.index(line.split(None, 1)[1]) for line in lines}) == 1


def test_cancel_then_retry_then_events(aq: Invoke) -> None:
    job_id = add(aq, "work")
    assert ok(aq("jobs", "cancel", str(job_id))) == f"job {job_id} cancelled\n"
    assert ok_json(aq("jobs", "show", str(job_id), "--json"))["status"] == "cancelled"

    assert ok(aq("jobs", "retry", str(job_id))) == f"job {job_id} is pending again\n"
    assert ok_json(aq("jobs", "show", str(job_id), "--json"))["status"] == "pending"

    events = ok_json(aq("jobs", "events", str(job_id), "--json"))
    assert [(e["type"], e["status"]) for e in events] == [
        ("added", "pending"),
        ("cancel", "cancelled"),
        ("retry", "pending"),
    ]
    assert all(e["job_id"] == job_id for e in events)

    lines = ok(aq("jobs", "events", str(job_id))).splitlines()
    assert lines[0].split() == ["id", "at", "event", "status", "data"]
    assert [line.split()[2:4] for line in lines[1:]] == [
        ["added", "pending"],
        ["cancel", "cancelled"],
        ["retry", "pending"],
    ]


def test_cancel_and_retry_json_print_the_job(aq: Invoke) -> None:
    job_id = add(aq, "work")
    cancelled = ok_json(aq("jobs", "cancel", str(job_id), "--json"))
    assert (cancelled["id"], cancelled["status"]) == (job_id, "cancelled")
    retried = ok_json(aq("jobs", "retry", str(job_id), "--json"))
    assert (retried["id"], retried["status"], retried["attempts"]) == (job_id, "pending", 0)


def test_edit_changes_a_pending_job(aq: Invoke) -> None:
    job_id = add(aq, "work", "--payload", '{"n": 1}', "--tag", "old")
    out = ok(
        aq(
            "jobs",
            "edit",
            str(job_id),
            "--payload",
            '{"n": 2}',
            "--priority",
            "9",
            "--run-at",
            "2031-01-01T00:00:00Z",
            "--tag",
            "new",
            "--tag",
            "shiny",
        )
    )
    assert out == f"job {job_id} updated: payload, priority, run_at, tags\n"
    job = ok_json(aq("jobs", "show", str(job_id), "--json"))
    assert job["payload"] == {"n": 2}
    assert job["priority"] == 9
    assert datetime.fromisoformat(job["run_at"]) == datetime(2031, 1, 1, tzinfo=UTC)
    assert job["tags"] == ["new", "shiny"]


def test_edit_json_prints_the_changed_job(aq: Invoke) -> None:
    job_id = add(aq, "work")
    job = ok_json(aq("jobs", "edit", str(job_id), "--priority", "-4", "--json"))
    assert (job["id"], job["priority"]) == (job_id, -4)


def test_url_comes_from_agentqueue_url_when_not_given(
    aq: Invoke, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = add(aq, "work")
    monkeypatch.setenv("AGENTQUEUE_URL", db_url)
    assert ok_json(aq("jobs", "show", str(job_id), "--json", url=None))["id"] == job_id
