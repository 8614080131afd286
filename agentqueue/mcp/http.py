"""MCP over streamable HTTP at `/mcp` in the API app, behind the REST API's keys.

`McpDoor` is an ASGI middleware in front of the FastAPI app: requests to `/mcp` (with or
without the trailing slash, so no client depends on following a redirect) go to the MCP
session manager after the key check; everything else goes on to the app. A key needs `read`
scope to open a session; each tool then checks its own scope (`access.Caller.require`).

Host and Origin protection (against DNS rebinding): on loopback, only loopback hosts and
origins are accepted; on another address, the hosts named in `ApiSettings.allowed_hosts` (keys
are required there anyway; without the setting the check is off).
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from agentqueue.api.errors import error_response
from agentqueue.api.security import Guard
from agentqueue.api.settings import ApiSettings
from agentqueue.errors import AgentQueueError
from agentqueue.mcp.access import STATE_KEY
from agentqueue.models import ApiScope

PATH = "/mcp"
_LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


def transport_security(settings: ApiSettings) -> TransportSecuritySettings:
    """The Host/Origin check for the app's binding."""
    if settings.loopback:
        hosts = _LOOPBACK_HOSTS
    elif settings.allowed_hosts:
        hosts = list(settings.allowed_hosts)
    else:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    allowed_hosts = [*hosts, *(f"{h}:*" for h in hosts)]
    origins = [f"{scheme}://{h}" for h in allowed_hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(allowed_hosts=allowed_hosts, allowed_origins=origins)


def session_app(server: MCPServer[Any], settings: ApiSettings) -> ASGIApp:
    """The MCP server's streamable-HTTP app (its session manager runs in the API's lifespan)."""
    return server.streamable_http_app(
        streamable_http_path="/", transport_security=transport_security(settings)
    )


class McpDoor:
    """Send `/mcp` requests, with their caller's access, to the MCP app; the rest to `app`."""

    def __init__(self, app: ASGIApp, *, mcp_app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.mcp_app = mcp_app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one request."""
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PATH or path.startswith(PATH + "/")):
            await self.app(scope, receive, send)
            return
        try:
            access = await self.guard.check(Request(scope), ApiScope.READ)
        except AgentQueueError as error:
            response = error_response(error, {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        inner = dict(scope)
        inner["path"] = path[len(PATH) :] or "/"
        inner["raw_path"] = inner["path"].encode()
        inner["root_path"] = scope.get("root_path", "") + PATH
        inner["state"] = {**scope.get("state", {}), STATE_KEY: access}
        await self.mcp_app(inner, receive, send)
