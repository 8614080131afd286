"""Keys and scopes on every route; open loopback; audit records of every mutation."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import pytest

from agentqueue import Queue
from agentqueue.models import ApiScope
from tests.api.conftest import Api, running_api

ADMIN_ONLY = {("POST", "/api/v1/jobs/bulk/purge"), ("GET", "/api/v1/audit")}


def needed_scope(method: str, path: str) -> ApiScope:
    """What a route should demand: reads need read, changes operate, purge and audit admin."""
    if (method, path) in ADMIN_ONLY:
        return ApiScope.ADMIN
    return ApiScope.READ if method == "GET" else ApiScope.OPERATE


def routes(api: Api) -> list[tuple[str, str]]:
    """Every (method, concrete path) the OpenAPI document lists under /api/v1, and /metrics."""
    found: list[tuple[str, str]] = []
    for path, operations in api.app.openapi()["paths"].items():
        if not (path.startswith("/api/v1") or path == "/metrics"):
            continue
        concrete = path.replace("{job_id}", "1").replace("{scope}", "group")
        concrete = re.sub(r"\{[a-z_]+\}", "x", concrete)
        found.extend((method.upper(), concrete) for method in sorted(operations))
    return found


def is_stream(path: str) -> bool:
    """Whether the route answers with an endless SSE stream."""
    return path == "/api/v1/events" or path.endswith("/stream")


@pytest.fixture
async def keyed(tmp_path: object) -> AsyncIterator[tuple[Api, dict[ApiScope, str]]]:
    """An API on SQLite whose store has one key per scope (so keys are required)."""
    queue = Queue(f"sqlite:///{tmp_path}/keys.db")
    async with running_api(queue) as api:
        keys = {
            scope: (await queue.create_api_key(f"k-{scope.value}", scope))[1] for scope in ApiScope
        }
        api.app.state.guard.forget()
        yield api, keys


async def test_every_route_needs_a_key_of_its_scope(keyed: tuple[Api, dict[ApiScope, str]]) -> None:
    api, keys = keyed
    table = routes(api)
    assert len(table) > 30
    order = list(ApiScope)
    for method, path in table:
        needed = needed_scope(method, path)
        async with api.with_key(None) as anonymous:
            answer = await anonymous.request(method, path, json={})
            assert answer.status_code == 401, (method, path)
            assert answer.headers["www-authenticate"] == "Bearer"
        async with api.with_key("aq_nope_nope") as stranger:
            assert (await stranger.request(method, path, json={})).status_code == 401
        for scope in order:
            if scope.allows(needed) and is_stream(path):
                continue  # an open stream never ends: test_rest_sse checks those on a server
            async with api.with_key(keys[scope]) as client:
                status = (await client.request(method, path, json={})).status_code
            if scope.allows(needed):
                assert status not in (401, 403), (method, path, scope, status)
            else:
                assert status == 403, (method, path, scope, status)
    async with api.with_key(None) as anonymous:
        assert (await anonymous.get("/healthz")).status_code == 200


async def test_keys_are_read_from_the_header_kinds_and_the_cookie(
    keyed: tuple[Api, dict[ApiScope, str]],
) -> None:
    api, keys = keyed
    secret = keys[ApiScope.READ]
    async with api.with_key(None) as client:
        assert (await client.get("/api/v1/stats", headers={"X-API-Key": secret})).status_code == 200
        client.cookies.set("agentqueue_key", secret)
        assert (await client.get("/api/v1/stats")).status_code == 200


async def test_a_revoked_key_stops_working(keyed: tuple[Api, dict[ApiScope, str]]) -> None:
    api, keys = keyed
    await api.queue.revoke_api_key("k-admin")
    async with api.with_key(keys[ApiScope.ADMIN]) as client:
        answer = await client.get("/api/v1/stats")
    assert answer.status_code == 401
    assert answer.json()["error"]["message"] == "unknown or revoked API key"


async def test_loopback_without_keys_is_open_and_any_key_closes_it(queue: Queue) -> None:
    async with running_api(queue) as api:
        assert (await api.client.get("/api/v1/stats")).status_code == 200
        await queue.create_api_key("first", "read")
        api.app.state.guard.forget()
        assert (await api.client.get("/api/v1/stats")).status_code == 401


async def test_a_public_address_needs_keys_even_with_none_in_the_store(queue: Queue) -> None:
    async with running_api(queue, host="0.0.0.0") as api:
        answer = await api.client.get("/api/v1/jobs")
        assert answer.status_code == 401
        assert "agentqueue api-keys create" in answer.json()["error"]["message"]
        assert (await api.client.get("/healthz")).status_code == 200
        assert (await api.client.get("/metrics")).status_code == 401


async def test_every_mutation_is_audited_with_who_what_and_how_it_ended(
    keyed: tuple[Api, dict[ApiScope, str]],
) -> None:
    api, keys = keyed
    async with api.with_key(keys[ApiScope.OPERATE]) as client:
        added = (await client.post("/api/v1/jobs", json={"job_type": "audited"})).json()
        await client.post(f"/api/v1/jobs/{added['id']}/cancel")
        assert (await client.post("/api/v1/jobs/999/cancel")).status_code == 404
        assert (await client.post("/api/v1/jobs/1/retry")).status_code == 200
        assert (await client.get("/api/v1/jobs")).status_code == 200  # reads are not audited
    async with api.with_key(keys[ApiScope.ADMIN]) as admin:
        log = (await admin.get("/api/v1/audit")).json()
    assert [(r["action"], r["target"], r["result"], r["actor"]) for r in reversed(log)] == [
        ("add_job", "audited", "ok", "k-operate"),
        ("cancel_job", str(added["id"]), "ok", "k-operate"),
        ("cancel_job", "999", "job_not_found", "k-operate"),
        ("retry_job", "1", "ok", "k-operate"),
    ]
    assert log[-1]["details"] == {"job_id": added["id"], "created": True}
    assert all(r["door"] == "rest" for r in log)
    assert not any(keys[ApiScope.OPERATE] in str(r) for r in log)


async def test_writes_from_another_sites_page_are_refused(queue: Queue) -> None:
    async with running_api(queue) as api:
        evil = {"Origin": "https://evil.example", "Host": "127.0.0.1:8000"}
        refused = await api.client.post("/api/v1/jobs", json={"job_type": "x"}, headers=evil)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
        fetch = {"Sec-Fetch-Site": "cross-site"}
        assert (await api.client.post("/api/v1/jobs/1/cancel", headers=fetch)).status_code == 403
        same = {"Origin": "http://api", "Host": "api"}
        assert (
            await api.client.post("/api/v1/jobs", json={"job_type": "x"}, headers=same)
        ).status_code == 201
        assert (await api.client.get("/api/v1/jobs", headers=evil)).status_code == 200  # reads pass
        assert (await api.client.post("/api/v1/jobs", json={"job_type": "y"})).status_code == 201
        assert len((await api.client.get("/api/v1/jobs")).json()["items"]) == 2


async def test_a_public_address_without_keys_says_so_at_start_up(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A start-up message only: one store shows it (the app closes its queue when it stops).
    with caplog.at_level(logging.WARNING, logger="agentqueue.api.app"):
        async with running_api(Queue(sqlite_url), host="0.0.0.0"):
            pass
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "0.0.0.0 needs an API key and the store has none" in warning
    assert "agentqueue api-keys create" in warning

    caplog.clear()
    async with Queue(sqlite_url) as queue:
        await queue.create_api_key("ops", "admin")
    with caplog.at_level(logging.WARNING, logger="agentqueue.api.app"):
        async with running_api(Queue(sqlite_url), host="0.0.0.0"):
            pass
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
