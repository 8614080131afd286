"""Tokens, cron, job types, limits, stats, workers and health over REST, on every store."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agentqueue.models import JobStatus
from agentqueue.testing import run_due_jobs
from tests.api.conftest import Api


class Resize(BaseModel):
    """A typed payload with an example."""

    width: int


async def test_tokens_are_created_listed_and_completed_once(api: Api) -> None:
    made = await api.client.post("/api/v1/tokens", json={"timeout": 60, "tags": ["ops"]})
    assert made.status_code == 201
    token = made.json()
    assert (token["status"], token["tags"]) == ("pending", ["ops"])
    listed = await api.client.get("/api/v1/tokens", params={"status": "pending", "tag": "ops"})
    assert [t["id"] for t in listed.json()] == [token["id"]]
    done = await api.client.post(f"/api/v1/tokens/{token['id']}/complete", json={"data": {"ok": 1}})
    assert (done.status_code, done.json()["status"], done.json()["data"]) == (
        200,
        "completed",
        {"ok": 1},
    )
    twice = await api.client.post(f"/api/v1/tokens/{token['id']}/complete", json={})
    assert (twice.status_code, twice.json()["error"]["code"]) == (409, "token_not_pending")
    assert (await api.client.get(f"/api/v1/tokens/{token['id']}")).json()["status"] == "completed"
    missing = await api.client.get("/api/v1/tokens/tok_missing")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "token_not_found")
    unknown = await api.client.post("/api/v1/tokens/tok_missing/complete", json={})
    assert unknown.status_code == 404
    bad = await api.client.post("/api/v1/tokens", json={"timeout": -1})
    assert bad.status_code == 422


async def test_a_token_completed_over_rest_resumes_the_waiting_job(api: Api) -> None:
    @api.queue.handler("approve")
    async def approve(payload: dict[str, Any], ctx: Any) -> Any:
        token = await ctx.create_token(timeout=600)
        result = await ctx.wait_for_token(token)
        return result.data

    job_id = (await api.client.post("/api/v1/jobs", json={"job_type": "approve"})).json()["id"]
    await run_due_jobs(api.queue)
    job = (await api.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["status"] == "waiting"
    await api.client.post(f"/api/v1/tokens/{job['waiting_for']}/complete", json={"data": "yes"})
    await run_due_jobs(api.queue)
    done = (await api.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert (done["status"], done["output"]) == ("completed", "yes")


async def test_cron_schedules_are_managed_over_rest(api: Api) -> None:
    body = {"name": "nightly", "expression": "30 2 * * *", "job_type": "report", "priority": 3}
    made = await api.client.post("/api/v1/cron", json=body)
    assert made.status_code == 201
    assert (made.json()["status"], made.json()["options"]["priority"]) == ("active", 3)
    assert [c["name"] for c in (await api.client.get("/api/v1/cron")).json()] == ["nightly"]
    edited = await api.client.patch("/api/v1/cron/nightly", json={"expression": "0 3 * * *"})
    assert edited.json()["expression"] == "0 3 * * *"
    paused = await api.client.post("/api/v1/cron/nightly/pause")
    assert paused.json()["status"] == "paused"
    listed = await api.client.get("/api/v1/cron", params={"status": "active"})
    assert listed.json() == []
    assert (await api.client.post("/api/v1/cron/nightly/resume")).json()["status"] == "active"
    bad = await api.client.post("/api/v1/cron", json={**body, "expression": "61 * * * *"})
    assert bad.status_code == 422
    assert "minute" in bad.json()["error"]["message"]
    zone = await api.client.post("/api/v1/cron", json={**body, "timezone": "Mars/Base"})
    assert zone.status_code == 422
    assert (await api.client.delete("/api/v1/cron/nightly")).status_code == 204
    assert (await api.client.get("/api/v1/cron/nightly")).status_code == 404
    assert (await api.client.delete("/api/v1/cron/nightly")).status_code == 404


async def test_job_types_are_listed_and_described_with_their_schema(api: Api) -> None:
    @api.queue.handler("resize", description="Resize an image", examples=[{"width": 64}])
    async def resize(payload: Resize) -> None:
        return None

    await api.queue.publish_job_types()
    [info] = (await api.client.get("/api/v1/job-types")).json()
    assert (info["name"], info["description"], info["examples"]) == (
        "resize",
        "Resize an image",
        [{"width": 64}],
    )
    described = (await api.client.get("/api/v1/job-types/resize")).json()
    assert described["payload_schema"]["required"] == ["width"]
    missing = await api.client.get("/api/v1/job-types/nope")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


async def test_limits_and_pauses_over_rest(api: Api) -> None:
    changed = await api.client.patch("/api/v1/limits/group/tenant-1", json={"max_concurrent": 2})
    assert changed.json()["max_concurrent"] == 2
    paused = await api.client.post("/api/v1/job-types/mail/pause")
    assert paused.json()["paused"] is True
    assert [
        (lim["scope"], lim["key"]) for lim in (await api.client.get("/api/v1/limits")).json()
    ] == [
        ("group", "tenant-1"),
        ("job_type", "mail"),
    ]
    assert (await api.client.post("/api/v1/job-types/mail/resume")).json() is None
    cleared = await api.client.patch("/api/v1/limits/group/tenant-1", json={"max_concurrent": None})
    assert cleared.json() is None
    assert (await api.client.delete("/api/v1/limits/group/tenant-1")).status_code == 404
    bad = await api.client.patch("/api/v1/limits/group/g", json={"rate_limit": 0})
    assert bad.status_code == 422
    wrong_scope = await api.client.patch("/api/v1/limits/tenant/g", json={"max_concurrent": 1})
    assert wrong_scope.status_code == 422


async def test_stats_workers_and_health(api: Api) -> None:
    await api.client.post("/api/v1/jobs", json={"job_type": "s"})
    stats = (await api.client.get("/api/v1/stats")).json()
    assert stats["totals"][JobStatus.PENDING.value] == 1
    assert (await api.client.get("/api/v1/workers")).json() == []
    health = await api.client.get("/healthz")
    assert health.json()["status"] == "ok"
    assert health.json()["store"] == api.queue.url


async def test_health_never_shows_a_store_password(postgres_url: str) -> None:
    from agentqueue import Queue
    from tests.api.conftest import running_api

    # The test server trusts local connections, so any password logs in.
    with_password = postgres_url.replace("postgres@", "postgres:s3cret@", 1)
    async with running_api(Queue(with_password)) as api:
        health = (await api.client.get("/healthz")).json()
    assert health["status"] == "ok"
    assert "s3cret" not in health["store"]
    assert "postgres:***@" in health["store"]


async def test_the_openapi_document_names_the_core_models(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert {"Job", "NewJob", "JobEvent", "Token", "CronJob", "BulkResult", "Limit"} <= set(schemas)
    add = document["paths"]["/api/v1/jobs"]["post"]
    assert add["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/NewJob")
