"""`agentqueue doctor`: prove the wiring — the store, the workers, and every client's MCP entry.

For each client config that holds our entry (project and user scope), doctor starts the
configured command itself (or connects to the configured URL) with the MCP SDK's own client
and lists the tools: a config that looks right but cannot start is exactly what it catches.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio

from agentqueue.errors import AgentQueueError
from agentqueue.installers import mcp_config
from agentqueue.installers.clients import CLIENTS, Client, Scope
from agentqueue.installers.plan import Context
from agentqueue.queue import Queue

_REFERENCE = re.compile(r"\$\{(?:env:)?(\w+)(?::-([^}]*))?\}|\{env:(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Finding:
    """One line of the report: passed (True), failed (False) or a warning (None)."""

    ok: bool | None
    subject: str
    detail: str


async def check_store(queue: Queue) -> list[Finding]:
    """Is the store reachable and migrated, does Redis keep its keys, is any worker alive?"""
    where = queue.url
    try:
        await queue.open()
    except AgentQueueError as error:
        return [Finding(False, "store", f"{where}: {error.message}")]
    findings = [Finding(True, "store", f"{where}: reachable, schema up to date")]
    policy = getattr(queue.backend, "eviction_policy", None)
    if isinstance(policy, str) and policy != "noeviction":
        findings.append(
            Finding(
                False,
                "store",
                f"Redis maxmemory-policy is {policy}: set noeviction, or "
                "Redis may delete jobs under memory pressure",
            )
        )
    other_libraries = getattr(queue.backend, "other_libraries", None)
    if other_libraries is not None:
        stale: list[str] = await other_libraries()
        if stale:
            findings.append(
                Finding(
                    None,
                    "store",
                    f"Redis holds {len(stale)} function libraries of other agentqueue versions "
                    f"({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}): once no "
                    "process of an older version runs, free them with FUNCTION DELETE <name>",
                )
            )
    workers = await queue.list_workers()
    if workers:
        names = ", ".join(f"{w.hostname}:{w.pid}" for w in workers[:5])
        findings.append(Finding(True, "workers", f"{len(workers)} alive ({names})"))
    else:
        findings.append(
            Finding(None, "workers", "none alive: jobs wait until `agentqueue worker` runs")
        )
    return findings


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand the variable references clients allow (`${VAR}`, `${env:VAR}`, `{env:VAR}`,
    `$VAR`, `${VAR:-default}`) the way the client would."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[3] or match[4]
        return env.get(name, match[2] or "")

    return _REFERENCE.sub(value, text)


def configured(root: Path) -> list[tuple[Client, Scope, Path, dict[str, Any]]]:
    """Every client config (project and user) that holds our entry."""
    found: list[tuple[Client, Scope, Path, dict[str, Any]]] = []
    for scope in Scope:
        context = Context(scope, root)
        for client in CLIENTS:
            spec = client.mcp
            try:
                path = context.locate(spec.project, spec.user, spec.prefer)
            except AgentQueueError:
                continue
            if path is None or not path.is_file():
                continue
            entry = mcp_config.read_entry(spec, path)
            if isinstance(entry, dict):
                found.append((client, scope, path, entry))
    return found


async def _transport(
    entry: dict[str, Any], root: Path, stack: AsyncExitStack, errlog: TextIO
) -> Any:
    """What the SDK's `Client` should talk to for this entry (a stdio server's stderr goes to
    `errlog`, a real file: the server process needs a file descriptor)."""
    from mcp.client.stdio import StdioServerParameters, stdio_client

    url = entry.get("url") or entry.get("serverUrl") or entry.get("httpUrl")
    if url:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        headers = {k: expand(str(v), os.environ) for k, v in (entry.get("headers") or {}).items()}
        token_var = entry.get("bearer_token_env_var")
        if token_var and os.environ.get(token_var):
            headers["Authorization"] = f"Bearer {os.environ[token_var]}"
        http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=30))
        return streamable_http_client(expand(url, os.environ), http_client=http)
    command = entry.get("command")
    argv = list(command) if isinstance(command, list) else [command, *(entry.get("args") or [])]
    extra = entry.get("env") or entry.get("environment") or {}
    env = {**os.environ, **{k: expand(str(v), os.environ) for k, v in extra.items()}}
    argv = [expand(str(part), env) for part in argv]
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(root))
    return stdio_client(params, errlog=errlog)


async def list_tools(entry: dict[str, Any], root: Path, timeout: float) -> list[str]:
    """Start (or reach) the configured server and return its tool names.

    Raises:
        Exception: whatever stops the server from answering (reported by the caller).
    """
    from mcp.client import Client

    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        try:
            with anyio.fail_after(timeout):
                async with AsyncExitStack() as stack:
                    target = await _transport(entry, root, stack, errlog)
                    agent = await stack.enter_async_context(Client(target, mode="legacy"))
                    return sorted(tool.name for tool in (await agent.list_tools()).tools)
        except Exception as error:
            errlog.seek(0)
            lines = [line.strip() for line in errlog.read().splitlines() if line.strip()]
            raise ServerFailed(_reason(error) + (f" ({lines[-1]})" if lines else "")) from error


class ServerFailed(Exception):
    """The configured server did not start or did not answer; says why."""


def _reason(error: BaseException) -> str:
    """The innermost message of an error (task groups wrap the real one)."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, TimeoutError):
        return "no answer in time"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


async def check_clients(root: Path, timeout: float) -> list[Finding]:
    """Launch every configured MCP entry and list its tools."""
    findings: list[Finding] = []
    for client, scope, path, entry in configured(root):
        context = Context(scope, root)
        subject = f"{client.name} ({context.show(path)})"
        try:
            tools = await list_tools(entry, root, timeout)
        except ServerFailed as error:  # a broken config is the finding, never a crash
            findings.append(Finding(False, subject, f"cannot start the server: {error}"))
            continue
        if "add_job" in tools:
            findings.append(Finding(True, subject, f"{len(tools)} tools (add_job, get_job, …)"))
        else:
            findings.append(
                Finding(False, subject, f"answers, but has no add_job ({len(tools)} tools)")
            )
    if not findings:
        findings.append(
            Finding(None, "mcp", "no client config names agentqueue: run `agentqueue install-mcp`")
        )
    return findings
