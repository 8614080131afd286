"""Fixtures of the MCP tests: the SDK's own client on `build_server`, in both protocol eras."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp.client import Client

from agentqueue import Queue
from agentqueue.mcp import LocalAccess, build_server


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """The 2026-07-28 direct path ("auto") and the classic initialize handshake ("legacy")."""
    return request.param


@asynccontextmanager
async def connect(queue: Queue, mode: str, **local: Any) -> AsyncIterator[Client]:
    """An MCP client in this process talking to the server of `queue` (the local admin unless
    `local` says otherwise).

    A context manager, not a fixture: the client's task group must be entered and left in the
    test's own task.
    """
    async with Client(build_server(queue, local=LocalAccess(**local)), mode=mode) as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    """Call a tool that must succeed; return its structured result."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content


async def refuse(client: Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail as a tool error (never an exception); return its text."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    assert "Traceback" not in text
    return text


def details(text: str) -> dict[str, Any]:
    """The JSON details line of a tool error."""
    return json.loads(text.splitlines()[-1])
