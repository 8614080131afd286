"""MCP `add_job` latency for bench/doors.py: one agent calling the tool, one call at a time.

Two transports, each through the official SDK's client as tests/mcp/ connects:

* streamable HTTP: `/mcp` of a running agentqueue app (the classic initialize handshake, as
  tests/mcp/test_mcp_transports.py's `http_agent`);
* stdio: `agentqueue mcp --url STORE` as a subprocess (the SDK's stdio client, its default
  connect mode).

Each transport makes `warmup` calls that are not measured, then `calls` measured ones.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

REPO = Path(__file__).resolve().parents[1]
JOB_TYPE = "bench.noop"
HTTP_MODE = "legacy"
STDIO_MODE = "auto"


async def timed_calls(agent: Client, calls: int, warmup: int) -> list[float]:
    """Call `add_job` warmup + calls times; return the measured calls' latencies in ms."""
    latencies: list[float] = []
    for n in range(warmup + calls):
        began = time.perf_counter()
        result = await agent.call_tool("add_job", {"job_type": JOB_TYPE, "payload": {"i": n}})
        took = (time.perf_counter() - began) * 1000
        if result.is_error:
            raise RuntimeError(f"add_job failed over MCP: {result.content}")
        if n >= warmup:
            latencies.append(took)
    return latencies


async def over_http(base: str, calls: int, warmup: int) -> list[float]:
    """`add_job` latencies over streamable HTTP at `base`/mcp."""
    async with (
        httpx2.AsyncClient(timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=HTTP_MODE) as agent,
    ):
        return await timed_calls(agent, calls, warmup)


def stdio_server(store_url: str, src: Path = REPO) -> StdioServerParameters:
    """`agentqueue mcp --url STORE` with the agentqueue sources of `src`, as a subprocess
    (started in `src`: `python -m` looks in its working folder first)."""
    env: dict[str, Any] = {**os.environ, "PYTHONPATH": str(src)}
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "agentqueue", "mcp", "--url", store_url],
        env=env,
        cwd=str(src),
    )


async def over_stdio(store_url: str, calls: int, warmup: int, src: Path = REPO) -> list[float]:
    """`add_job` latencies over stdio to an `agentqueue mcp` subprocess on `store_url`."""
    async with Client(stdio_server(store_url, src), mode=STDIO_MODE) as agent:
        return await timed_calls(agent, calls, warmup)
