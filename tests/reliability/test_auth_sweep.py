"""Reliability scenario 12: the auth sweep on an app configured for a non-loopback address.

Every route the app serves (its OpenAPI document, the dashboard's routers and the app's own
top-level routes: enumerated, not listed by hand) and `/mcp` get requests with no key, a wrong
key, a tampered or revoked key, malformed `Authorization` headers, keys in places that are not
read (query string) and valid keys of too low a scope. The answer is always 401 or 403 — never
2xx (the call was let through) nor 5xx (the check itself broke) — except for an explicit public
allow-list, and dashboard pages, which send a browser to the sign-in page instead (303). Over
MCP, a real client with a read key is refused every tool that changes something, and nothing
changes.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import httpx2
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

from agentqueue import Queue
from agentqueue.api import ApiSettings, create_app
from agentqueue.api.dashboard import pages, signin
from agentqueue.models import ApiScope
from tests.api.conftest import Api, live_server, running_api
from tests.api.test_rest_auth import is_stream, needed_scope
from tests.mcp.test_mcp_transports import http_agent
from tests.reliability.figures import record

PUBLIC = {
    ("GET", "/healthz"),  # load balancers probe it
    ("GET", "/login"),  # the dashboard's sign-in form
    ("GET", "/openapi.json"),  # the API's description; it holds no data
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
"""What answers without a key, on purpose."""

SIGN_IN = {("POST", "/login"), ("GET", "/logout"), ("POST", "/logout")}
"""The sign-in routes: a bad key must not sign in (no cookie is set)."""

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "sweep", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def concrete(path: str) -> str:
    """A path template with its parameters filled (ids by a number, names by a word)."""
    path = path.replace("{job_id}", "1").replace("{scope}", "group")
    return re.sub(r"\{[a-z_]+(:[a-z]+)?\}", "x", path)


def every_route(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the app answers: its OpenAPI document, the dashboard's
    routers (left out of the document) and the app's own top-level routes (the docs pages)."""
    found: set[tuple[str, str]] = set()
    for path, operations in app.openapi()["paths"].items():
        found.update((method.upper(), path) for method in operations)
    for router in (pages.router, signin.router):
        for route in router.routes:
            assert isinstance(route, APIRoute)
            found.update((method, route.path) for method in route.methods or ())
    for route in app.routes:
        if isinstance(route, Route) and route.methods is not None:
            found.update((method, route.path) for method in route.methods if method != "HEAD")
    return sorted(found)


def bad_credentials(valid: str, revoked: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, httpx request arguments) of every way of presenting no good key; `valid` is an
    admin key, so a check that ignored what was wrong would let the call through."""
    basic = base64.b64encode(f"admin:{valid}".encode()).decode()
    flipped = valid[:-1] + ("A" if valid[-1] != "A" else "B")
    yield "none", {}
    yield "basic", {"headers": {"Authorization": f"Basic {basic}"}}
    yield "bearer-empty", {"headers": {"Authorization": "Bearer "}}
    yield "bearer-only", {"headers": {"Authorization": "Bearer"}}
    yield "wrong-key", {"headers": {"Authorization": "Bearer aq_nope_nope"}}
    yield "tampered", {"headers": {"Authorization": f"Bearer {flipped}"}}
    yield "truncated", {"headers": {"Authorization": f"Bearer {valid[:-4]}"}}
    yield "revoked", {"headers": {"Authorization": f"Bearer {revoked}"}}
    yield "no-scheme", {"headers": {"Authorization": valid}}
    yield "other-scheme", {"headers": {"Authorization": f"Token {valid}"}}
    yield "huge", {"headers": {"Authorization": "Bearer aq_" + "x" * 100_000}}
    yield "non-ascii", {"headers": [(b"Authorization", b"Bearer \xff\xfe\x00aq")]}
    yield "x-api-key-wrong", {"headers": {"X-API-Key": flipped}}
    yield "cookie-wrong", {"headers": {"Cookie": f"agentqueue_key={flipped}"}}
    yield "query", {"params": {"api_key": valid, "key": valid, "token": valid}}


@contextlib.asynccontextmanager
async def public_app(queue: Queue) -> AsyncIterator[tuple[Api, dict[ApiScope, str], str]]:
    """The app as `serve --host 0.0.0.0` builds it (dashboard and MCP on), its store holding
    one key per scope and a revoked one."""
    async with running_api(queue, host="0.0.0.0", dashboard=True, mcp=True) as api:
        keys = {
            scope: (await queue.create_api_key(f"k-{scope.value}", scope))[1] for scope in ApiScope
        }
        revoked = (await queue.create_api_key("gone", ApiScope.ADMIN))[1]
        await queue.revoke_api_key("gone")
        api.app.state.guard.forget()
        yield api, keys, revoked


def judge(method: str, path: str, status: int, location: str | None) -> str:
    """What an answer to a request without a good key is: refused, sent to sign in, or let
    through (a 2xx, or a 5xx: the check broke)."""
    if status in (401, 403):
        return "refused"
    browser = path in {r.path for r in pages.router.routes if isinstance(r, APIRoute)}
    # Dashboard pages and sign-in send a browser to the form; nothing is shown or set.
    if (browser or (method, path) in SIGN_IN) and status in (303, 307):
        return "sign-in" if (location or "").startswith("/login") else f"redirect: {location}"
    return f"let through: {status}"


async def test_every_route_refuses_every_bad_credential_on_a_public_address(
    sqlite_url: str,
) -> None:
    async with Queue(sqlite_url) as queue, public_app(queue) as (api, keys, revoked):
        await queue.add_job("report")  # something a leak would show
        routes = [(m, p) for m, p in every_route(api.app) if (m, p) not in PUBLIC]
        assert len(routes) > 40
        outcomes: Counter[str] = Counter()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app), base_url="http://api"
        ) as client:
            for method, template in routes:
                path = concrete(template)
                for name, request in bad_credentials(keys[ApiScope.ADMIN], revoked):
                    answer = await client.request(method, path, json={}, **request)
                    verdict = judge(
                        method, template, answer.status_code, answer.headers.get("location")
                    )
                    assert verdict in ("refused", "sign-in"), (method, path, name, verdict)
                    # Clearing a rejected cookie is fine; setting one would be a sign-in.
                    cookie = answer.headers.get("set-cookie", "")
                    assert not re.match(r'agentqueue_key=[^;"]', cookie), (method, path, name)
                    outcomes[verdict] += 1
            for method, path in sorted(PUBLIC):
                assert (await client.request(method, path)).status_code == 200, path
        mcp_refused = await sweep_mcp_transport(api.app, keys[ApiScope.ADMIN], revoked)
        scope_refused = await sweep_scopes(api, keys, routes)
        assert [job.job_type for job in (await queue.list_jobs()).items] == ["report"]
    record(
        "12-auth-sweep",
        "sqlite",
        routes=len(routes),
        credentials=len(list(bad_credentials("k", "r"))),
        requests=sum(outcomes.values()),
        refused=outcomes["refused"],
        sent_to_sign_in=outcomes["sign-in"],
        low_scope_refused=scope_refused,
        mcp_requests_refused=mcp_refused,
        let_through=0,
        server_errors=0,
    )


async def sweep_mcp_transport(app: FastAPI, valid: str, revoked: str) -> int:
    """Every bad credential on every method of `/mcp` and `/mcp/`: 401, with the challenge."""
    refused = 0
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        for path in ("/mcp", "/mcp/"):
            for method in ("POST", "GET", "DELETE"):
                for name, request in bad_credentials(valid, revoked):
                    headers = {**MCP_HEADERS, **dict(request.pop("headers", {}))}
                    answer = await client.request(
                        method, path, json=INITIALIZE, headers=headers, **request
                    )
                    assert answer.status_code == 401, (method, path, name, answer.text[:200])
                    refused += 1
    return refused


async def sweep_scopes(api: Api, keys: dict[ApiScope, str], routes: list[tuple[str, str]]) -> int:
    """Valid keys of too low a scope on every API route: 403, never let through."""
    refused = 0
    for method, template in routes:
        if not (template.startswith("/api/v1") or template == "/metrics"):
            continue
        needed = needed_scope(method, concrete(template))
        for scope in ApiScope:
            if scope.allows(needed):
                continue
            if is_stream(template):
                continue  # a refused stream answers 403 at once; an allowed one never ends
            async with api.with_key(keys[scope]) as client:
                answer = await client.request(method, concrete(template), json={})
            assert answer.status_code == 403, (method, template, scope, answer.status_code)
            refused += 1
    return refused


async def test_mcp_over_http_with_a_read_key_changes_nothing(shared_url: str) -> None:
    """A real MCP client on a public-address server: a read key is refused every tool that
    is not read-only, whatever the arguments, and the store is unchanged."""
    queue = Queue(shared_url)
    settings = ApiSettings(host="0.0.0.0", allowed_hosts=("127.0.0.1",), dashboard=False, mcp=True)
    app = create_app(queue, settings=settings)
    async with live_server(app) as base:
        _, reader = await queue.create_api_key("reader", "read")
        job_id = await queue.add_job("report")
        token = await queue.create_token()
        async with httpx2.AsyncClient() as raw:
            anonymous = await raw.post(f"{base}/mcp", json=INITIALIZE, headers=MCP_HEADERS)
            assert anonymous.status_code == 401
        refused: list[str] = []
        scope_refusals = 0
        async with http_agent(base, reader) as agent:
            tools = (await agent.list_tools()).tools
            for tool in tools:
                hints = tool.annotations
                if hints is not None and hints.read_only_hint:
                    continue
                arguments = {"job_id": int(job_id), "token_id": token.id, "job_type": "report"}
                allowed = set(tool.input_schema.get("properties", {}))
                result = await agent.call_tool(
                    tool.name, {k: v for k, v in arguments.items() if k in allowed}
                )
                assert result.is_error, tool.name
                text = result.content[0].text  # type: ignore[union-attr]
                # Refused for its scope, or for arguments that do not fit (checked first).
                assert "needs an API key with scope" in text or "validation error" in text, text
                scope_refusals += "needs an API key with scope" in text
                refused.append(tool.name)
        assert len(refused) >= 10, refused
        assert scope_refusals >= 5, scope_refusals
        jobs = (await queue.list_jobs()).items
        assert [(job.id, job.status.value) for job in jobs] == [(int(job_id), "pending")]
        assert (await queue.get_token(token.id)).status.value == "pending"  # type: ignore[union-attr]
        assert await queue.list_cron_jobs() == []
    record(
        "12-auth-sweep-mcp-scope",
        shared_url.split(":", 1)[0],
        tools_refused=len(refused),
        refused_for_scope=scope_refusals,
        tools=len(tools),
        changes=0,
    )
