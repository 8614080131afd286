"""`/api/v1/jobs` on every store: add, list, read, change, history, bulk, and every error."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agentqueue import Queue
from agentqueue.testing import run_due_jobs
from tests.api.conftest import Api, running_api


class Mail(BaseModel):
    """A typed payload, so a bad one is refused at enqueue."""

    to: str
    retries: int = 0


def register(api: Api) -> None:
    """Handlers the tests run in-process."""

    @api.queue.handler("mail", description="Send one mail")
    async def mail(payload: Mail) -> dict[str, str]:
        return {"sent_to": payload.to}

    @api.queue.handler("broken", max_attempts=1)
    async def broken(payload: dict[str, Any]) -> None:
        raise RuntimeError("always")


async def test_adding_a_job_answers_201_with_the_job_and_200_for_a_duplicate_key(api: Api) -> None:
    body = {"job_type": "report", "payload": {"day": 1}, "priority": 5, "tags": ["daily"]}
    first = await api.client.post("/api/v1/jobs", json={**body, "idempotency_key": "d1"})
    assert first.status_code == 201
    added = first.json()
    assert added["created"] is True
    assert (added["job"]["status"], added["job"]["priority"], added["job"]["tags"]) == (
        "pending",
        5,
        ["daily"],
    )
    again = await api.client.post("/api/v1/jobs", json={**body, "idempotency_key": "d1"})
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["created"]) == (added["id"], False)


async def test_a_batch_is_atomic_and_refs_link_its_jobs(api: Api) -> None:
    jobs = [
        {"job_type": "extract", "ref": "x"},
        {"job_type": "load", "depends_on": ["x"]},
    ]
    answer = await api.client.post("/api/v1/jobs/batch", json={"jobs": jobs})
    assert answer.status_code == 201
    first, second = answer.json()
    assert second["job"]["depends_on"] == [first["id"]]
    assert second["job"]["status"] == "blocked"
    bad = await api.client.post(
        "/api/v1/jobs/batch",
        json={"jobs": [{"job_type": "ok"}, {"job_type": "late", "depends_on": ["nope"]}]},
    )
    assert bad.status_code == 422
    assert "not the ref of an earlier job" in bad.json()["error"]["message"]
    assert len((await api.client.get("/api/v1/jobs")).json()["items"]) == 2  # nothing of it


async def test_a_bad_payload_is_422_naming_the_field_with_the_schema(api: Api) -> None:
    register(api)
    answer = await api.client.post("/api/v1/jobs", json={"job_type": "mail", "payload": {}})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "payload_invalid"
    assert error["errors"][0]["loc"] == "to"
    assert error["schema"]["required"] == ["to"]
    malformed = await api.client.post("/api/v1/jobs", json={"job_type": "mail", "priority": "x"})
    assert malformed.status_code == 422
    assert malformed.json()["error"]["errors"][0]["loc"] == "priority"
    no_type = await api.client.post("/api/v1/jobs", json={"payload": {}})
    assert no_type.status_code == 422
    assert "job_type" in no_type.json()["error"]["message"]
    assert (await api.client.get("/api/v1/jobs")).json()["items"] == []


async def test_listing_filters_and_pages_like_python(api: Api) -> None:
    for n in range(5):
        await api.client.post(
            "/api/v1/jobs", json={"job_type": "a" if n % 2 else "b", "tags": [f"t{n % 3}"]}
        )
    page = (await api.client.get("/api/v1/jobs", params={"limit": 2, "order": "oldest"})).json()
    assert [job["id"] for job in page["items"]] == [1, 2]
    rest = await api.client.get(
        "/api/v1/jobs", params={"limit": 10, "order": "oldest", "cursor": page["next_cursor"]}
    )
    assert [job["id"] for job in rest.json()["items"]] == [3, 4, 5]
    typed = await api.client.get("/api/v1/jobs", params=[("job_type", "a"), ("tag", "t1")])
    assert [job["id"] for job in typed.json()["items"]] == [2]
    bad = await api.client.get("/api/v1/jobs", params={"status": "sleeping"})
    assert bad.status_code == 422
    assert bad.json()["error"]["errors"][0]["loc"].startswith("query.status")
    wrong_cursor = await api.client.get("/api/v1/jobs", params={"cursor": "zz"})
    assert wrong_cursor.status_code == 422


async def test_get_edit_cancel_retry_and_their_errors(api: Api) -> None:
    job_id = (await api.client.post("/api/v1/jobs", json={"job_type": "r"})).json()["id"]
    edited = await api.client.patch(f"/api/v1/jobs/{job_id}", json={"priority": 9})
    assert (edited.status_code, edited.json()["priority"]) == (200, 9)
    assert (await api.client.patch(f"/api/v1/jobs/{job_id}", json={"nope": 1})).status_code == 422
    retry_pending = await api.client.post(f"/api/v1/jobs/{job_id}/retry")
    assert retry_pending.status_code == 409
    assert retry_pending.json()["error"]["code"] == "invalid_transition"
    cancelled = await api.client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    again = await api.client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409
    retried = await api.client.post(f"/api/v1/jobs/{job_id}/retry")
    assert retried.json()["status"] == "pending"
    events = (await api.client.get(f"/api/v1/jobs/{job_id}/events")).json()
    assert [e["type"] for e in events] == ["added", "edit", "cancel", "retry"]
    assert (await api.client.get(f"/api/v1/jobs/{job_id}/steps")).json() == {}
    for path in ("", "/events", "/steps"):
        missing = await api.client.get(f"/api/v1/jobs/424242{path}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "job_not_found"
    for action in ("cancel", "retry"):
        assert (await api.client.post(f"/api/v1/jobs/424242/{action}")).status_code == 404
    assert (await api.client.get("/api/v1/nothing")).status_code == 404


async def test_bulk_operations_preview_then_act(api: Api) -> None:
    register(api)
    for _ in range(3):
        await api.client.post("/api/v1/jobs", json={"job_type": "broken", "tags": ["b"]})
    await run_due_jobs(api.queue)
    preview = await api.client.post(
        "/api/v1/jobs/bulk/retry", json={"tags": ["b"], "dry_run": True}
    )
    assert (preview.json()["matched"], preview.json()["changed"]) == (3, 0)
    done = await api.client.post("/api/v1/jobs/bulk/retry", json={"tags": ["b"]})
    assert done.json()["changed"] == 3
    edit = await api.client.post(
        "/api/v1/jobs/bulk/edit", json={"tags": ["b"], "changes": {"priority": 4}}
    )
    assert edit.json()["changed"] == 3
    cancel = await api.client.post("/api/v1/jobs/bulk/cancel", json={"job_type": ["broken"]})
    assert cancel.json()["changed"] == 3
    await api.client.post("/api/v1/jobs", json={"job_type": "keep"})  # SQLite keeps its newest
    purge = await api.client.post("/api/v1/jobs/bulk/purge", json={"status": ["cancelled"]})
    assert purge.json()["changed"] == 3
    refused = await api.client.post("/api/v1/jobs/bulk/purge", json={"status": ["pending"]})
    assert refused.status_code == 422
    unknown = await api.client.post("/api/v1/jobs/bulk/cancel", json={"colour": "red"})
    assert unknown.status_code == 422


async def test_bodies_over_the_limit_are_413() -> None:
    async with running_api(Queue("memory://"), max_body_bytes=1000) as small:
        big = {"job_type": "x", "payload": {"blob": "a" * 2000}}
        answer = await small.client.post("/api/v1/jobs", json=big)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "payload_too_large"

        async def chunks() -> Any:  # no Content-Length: counted as it streams
            for _ in range(3):
                yield b"x" * 600

        streamed = await small.client.post(
            "/api/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert (await small.client.get("/api/v1/jobs")).json()["items"] == []


async def test_jobs_record_who_added_them_and_mine_finds_them(api: Api) -> None:
    added = (await api.client.post("/api/v1/jobs", json={"job_type": "a"})).json()
    assert added["job"]["origin"] == {
        "door": "rest",
        "actor": "local",
        "client": None,
        "session": None,
    }
    await api.queue.add_job("a")  # from Python: no origin
    mine = (await api.client.get("/api/v1/jobs", params={"mine": True})).json()["items"]
    assert [job["id"] for job in mine] == [added["id"]]
    by = await api.client.get("/api/v1/jobs", params={"created_by": "someone-else"})
    assert by.json()["items"] == []
