"""Who calls a tool: the API key behind an HTTP session (checked by the HTTP mount), or the
local user of a stdio server; the MCP client's name and session; and scope checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from agentqueue.models import ApiScope, Origin

STATE_KEY = "agentqueue_access"
"""Where the HTTP mount leaves the caller's `Access` on the request's state."""


@dataclass(frozen=True)
class Caller:
    """One tool call's caller."""

    actor: str
    scope: ApiScope
    client: str | None
    session: str | None

    def origin(self) -> Origin:
        """The origin of jobs this caller adds."""
        return Origin(door="mcp", actor=self.actor, client=self.client, session=self.session)

    def require(self, needed: ApiScope) -> None:
        """Refuse a call above the caller's scope, saying what is needed."""
        if not self.scope.allows(needed):
            raise ToolError(
                f"this tool needs an API key with scope {needed.value}; the key "
                f"{self.actor!r} has {self.scope.value} (ask for a key with "
                f"`agentqueue api-keys create --scope {needed.value}`)"
            )


@dataclass(frozen=True)
class LocalAccess:
    """The access of a caller the transport does not identify (stdio, in-process)."""

    actor: str = "local"
    scope: ApiScope = ApiScope.ADMIN


def caller_of(ctx: Context[Any, Any], local: LocalAccess) -> Caller:
    """The caller of the tool call `ctx` belongs to."""
    request = ctx.request_context.request
    state = getattr(request, "state", None)
    access = getattr(state, STATE_KEY, None) if state is not None else None
    headers = getattr(request, "headers", None)
    session = headers.get("mcp-session-id") if headers is not None else None
    client = None
    params = getattr(ctx.session, "client_params", None)
    if params is not None and params.client_info is not None:
        client = params.client_info.name
    if access is None:
        return Caller(local.actor, local.scope, client, session)
    return Caller(access.actor, access.scope, client, session)
