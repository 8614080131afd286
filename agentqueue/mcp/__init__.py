"""The MCP door: `build_server(queue)` for stdio (`agentqueue mcp`) and HTTP (`/mcp`)."""

from agentqueue.mcp.access import LocalAccess
from agentqueue.mcp.server import build_server

__all__ = ["LocalAccess", "build_server"]
