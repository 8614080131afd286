"""Errors an agent can fix: a tool error that says what was wrong and how to fix it, never a
stack trace. A bad payload names each field, what was expected and the job type's schema."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver.exceptions import ToolError

from agentqueue.errors import AgentQueueError, PayloadInvalid


def tool_error(error: AgentQueueError) -> ToolError:
    """The tool error of a core error: its code and message, then its details as JSON."""
    details = {k: v for k, v in error.to_dict().items() if k not in ("code", "message")}
    text = f"[{error.code}] {error.message}"
    if isinstance(error, PayloadInvalid):
        fields = "; ".join(f"field {e['loc'] or '(payload)'}: {e['msg']}" for e in error.errors)
        text += f"\nFix the payload ({fields}). The job type's payload schema follows."
    if details:
        text += "\n" + json.dumps(details, default=str, sort_keys=True)[:8000]
    return ToolError(text)


@asynccontextmanager
async def fixable() -> AsyncIterator[None]:
    """Turn the core's errors raised inside into tool errors."""
    try:
        yield
    except AgentQueueError as error:
        raise tool_error(error) from None
