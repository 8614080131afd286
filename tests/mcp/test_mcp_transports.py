"""MCP over real transports: an `agentqueue mcp` subprocess on stdio, and `/mcp` on a real
server over streamable HTTP with and without keys; wait_for_job's progress from a worker
process; resource updates while a job changes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from agentqueue import Queue
from agentqueue.api import ApiSettings, create_app
from tests.acceptance import ledger
from tests.acceptance.checks import check_progress_seen
from tests.acceptance.procs import Env, kill_all
from tests.api.conftest import live_server
from tests.mcp.conftest import call, refuse

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def stdio_server(url: str, *args: str) -> StdioServerParameters:
    """`agentqueue mcp --url URL ARGS` as a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "agentqueue", "mcp", "--url", url, *args], env=env
    )


async def test_stdio_subprocess_serves_the_tools(shared_url: str) -> None:
    async with Client(stdio_server(shared_url)) as agent:
        names = {tool.name for tool in (await agent.list_tools()).tools}
        assert {"add_job", "wait_for_job", "explain_job", "search_docs"} <= names
        added = await call(agent, "add_job", job_type="report", payload={"day": 1})
        job = await call(agent, "get_job", job_id=added["id"])
        assert job["payload"] == {"day": 1}
        assert "[job_not_found]" in await refuse(agent, "get_job", job_id=999_999)
        pages = {str(r.uri) for r in (await agent.list_resources()).resources}
        assert "agentqueue://docs/guides/rest-api" in pages
    async with Queue(shared_url) as queue:
        stored = await queue.get_job(added["id"])
        assert stored is not None
        assert stored.origin is not None
        assert stored.origin.door == "mcp"


async def test_stdio_server_with_a_read_scope_refuses_changes(sqlite_url: str) -> None:
    async with Client(stdio_server(sqlite_url, "--scope", "read", "--actor", "viewer")) as agent:
        text = await refuse(agent, "add_job", job_type="report")
        assert "needs an API key with scope operate" in text
        assert (await call(agent, "list_jobs"))["items"] == []


@asynccontextmanager
async def http_agent(base: str, key: str | None = None) -> AsyncIterator[Client]:
    """An MCP client on `/mcp` of a live server (with a bearer key when given)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as agent,
    ):
        yield agent


@asynccontextmanager
async def served(url: str, **settings: Any) -> AsyncIterator[tuple[str, Queue]]:
    """A live API server (MCP at /mcp) on the store at `url`."""
    queue = Queue(url)
    app = create_app(queue, settings=ApiSettings(dashboard=False, **settings))
    async with live_server(app) as base:
        yield base, queue


async def test_http_without_keys_on_loopback_and_the_audit_names_the_client(
    shared_url: str,
) -> None:
    async with served(shared_url) as (base, queue), http_agent(base) as agent:
        added = await call(agent, "add_job", job_type="report")
        assert added["job"]["origin"]["session"]  # the HTTP session id
        assert added["job"]["origin"]["client"] == "mcp"
        [record] = await queue.list_audit()
        assert (record.actor, record.door, record.details["client"]) == ("local", "mcp", "mcp")


async def test_http_needs_a_key_once_keys_exist_and_scopes_pick_the_tools(
    shared_url: str,
) -> None:
    async with served(shared_url) as (base, queue):
        _, reader = await queue.create_api_key("reader", "read")
        _, operator = await queue.create_api_key("operator", "operate")
        async with httpx2.AsyncClient() as raw:
            # The open loopback mode ends within the app's key cache (a second).
            for _ in range(40):
                refused = await raw.post(
                    f"{base}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
                )
                if refused.status_code == 401:
                    break
                await asyncio.sleep(0.1)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        async with http_agent(base, reader) as agent:
            assert (await call(agent, "list_jobs"))["items"] == []
            text = await refuse(agent, "add_job", job_type="report")
            assert "scope operate" in text
        async with http_agent(base, operator) as agent:
            added = await call(agent, "add_job", job_type="report")
            assert added["job"]["origin"]["actor"] == "operator"
            mine = await call(agent, "list_jobs", mine=True)
            assert [j["id"] for j in mine["items"]] == [added["id"]]
            assert "scope admin" in await refuse(agent, "cancel_jobs", status=["pending"])


async def test_http_refuses_foreign_hosts_on_loopback(sqlite_url: str) -> None:
    async with served(sqlite_url) as (base, _), httpx2.AsyncClient() as raw:
        answer = await raw.post(
            f"{base}/mcp/",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={
                "Host": "evil.example",
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
            },
        )
    assert answer.status_code == 421


async def test_wait_for_job_reports_progress_from_a_worker_process(
    shared_url: str, tmp_path: Path
) -> None:
    ledger_path = tmp_path / "ledger.db"
    ledger.create(str(ledger_path))
    env = Env(shared_url, str(ledger_path), tmp_path, [])
    try:
        async with served(shared_url) as (base, _), http_agent(base) as agent:
            added = await call(agent, "add_job", job_type="progress", payload={"steps": 4})
            env.start("--concurrency", "2")
            seen: list[tuple[float, float | None, str | None]] = []
            all_seen = asyncio.Event()

            async def progress(value: float, total: float | None, message: str | None) -> None:
                seen.append((value, total, message))
                if value >= 100:
                    all_seen.set()

            result = await agent.call_tool(
                "wait_for_job",
                {"job_id": added["id"], "timeout_seconds": 30},
                progress_callback=progress,
            )
            assert not result.is_error, result.content
            waited = result.structured_content
            assert waited is not None
            assert (waited["done"], waited["job"]["output"]) == (True, {"steps": 4})
            # The SDK runs each progress callback in a task of its own, so the tool's result
            # can arrive before the last callbacks ran: wait for them, then check the order.
            async with asyncio.timeout(10):
                await all_seen.wait()
            check_progress_seen([value for value, _, _ in seen])
            assert all(message == f"step {value // 25:.0f} of 4" for value, _, message in seen)
            timed_out = await call(agent, "wait_for_job", job_id=added["id"], timeout_seconds=1)
            assert timed_out["done"] is True  # already ended: answers at once
    finally:
        kill_all(env.started)


async def test_a_job_resource_reads_and_reports_its_changes(queue: Queue) -> None:
    from tests.mcp.conftest import connect

    job_id = await queue.add_job("report")
    async with connect(queue, "auto") as agent:
        contents = await agent.read_resource(f"agentqueue://jobs/{job_id}")
        assert f'"id":{job_id}' in contents.contents[0].text  # type: ignore[union-attr]
        stats = await agent.read_resource("agentqueue://stats")
        assert '"pending": 1' in stats.contents[0].text  # type: ignore[union-attr]
        uri = f"agentqueue://jobs/{job_id}"
        async with agent.listen(resource_subscriptions=[uri]) as updates:
            await queue.edit_job(job_id, priority=5)  # another writer changes the job
            event = await asyncio.wait_for(anext(updates), 10)
        assert str(event.uri) == uri  # type: ignore[union-attr]
