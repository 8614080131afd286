"""`install-mcp`: our server's entry in each client's MCP config, in that client's own shape.

stdio entries start `agentqueue mcp` (with `--app` / `--url` when given). A project file is
committed and shared, so it names the portable `agentqueue`; a user-level file is read by GUI
apps that lack the shell's PATH, so it names the absolute executable. HTTP entries point at
`<server>/mcp` and refer to the API key through the client's own variable syntax — a key is
never written into a file.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agentqueue.errors import InvalidArgument
from agentqueue.installers import jsonc, merge
from agentqueue.installers.clients import Client, McpSpec, Scope
from agentqueue.installers.plan import Context, Target

DEFAULT_TOKEN_ENV = "AGENTQUEUE_TOKEN"


@dataclass(frozen=True)
class Server:
    """What the entry should start or reach."""

    transport: str = "stdio"
    app: str | None = None
    store_url: str | None = None
    server_url: str | None = None
    token_env: str | None = DEFAULT_TOKEN_ENV

    def __post_init__(self) -> None:
        if self.transport not in ("stdio", "http"):
            raise InvalidArgument(f"--transport must be stdio or http, not {self.transport!r}")
        if self.transport == "http":
            if not self.server_url:
                raise InvalidArgument(
                    "--transport http needs --server-url, e.g. http://127.0.0.1:8000"
                )
            parts = urlsplit(self.server_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InvalidArgument(f"--server-url {self.server_url!r} is not an http(s) URL")
            if self.app or self.store_url:
                raise InvalidArgument(
                    "--app and --url are for --transport stdio (the server has its own)"
                )
        elif self.server_url:
            raise InvalidArgument("--server-url needs --transport http")

    @property
    def endpoint(self) -> str:
        """The MCP endpoint: the server URL with `/mcp` added unless it ends with it."""
        url = (self.server_url or "").rstrip("/")
        return url if url.endswith("/mcp") else f"{url}/mcp"


def executable() -> list[str]:
    """The absolute command that runs this agentqueue (for user-level configs)."""
    beside = Path(sys.executable).parent / (
        "agentqueue.exe" if sys.platform == "win32" else "agentqueue"
    )
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("agentqueue")
    return [str(Path(found).resolve())] if found else [sys.executable, "-m", "agentqueue"]


def command(server: Server, scope: Scope) -> list[str]:
    """The argv of the stdio server."""
    args = ["mcp"]
    if server.app:
        args += ["--app", server.app]
    if server.store_url:
        args += ["--url", server.store_url]
    program = ["agentqueue"] if scope is Scope.PROJECT else executable()
    return [*program, *args]


def entry(spec: McpSpec, server: Server, scope: Scope) -> dict[str, Any]:
    """The client's entry for `server`.

    Raises:
        InvalidArgument: the client's file cannot hold a remote server.
    """
    shaped: dict[str, Any] = {}
    if server.transport == "stdio":
        if spec.stdio_type:
            shaped["type"] = spec.stdio_type
        argv = command(server, scope)
        if spec.command_array:
            shaped["command"] = argv
        else:
            shaped["command"], shaped["args"] = argv[0], argv[1:]
        return shaped | spec.stdio_extra
    if not spec.http:
        raise InvalidArgument(f"{spec.note}: use --transport stdio")
    if spec.http_type:
        shaped["type"] = spec.http_type
    shaped[spec.url_key] = server.endpoint
    if server.token_env and spec.bearer_env_key:
        shaped[spec.bearer_env_key] = server.token_env
    elif server.token_env and spec.token:
        reference = spec.token.replace("VAR", server.token_env)
        shaped["headers"] = {"Authorization": f"Bearer {reference}"}
    return shaped


def container(spec: McpSpec, path: Path) -> tuple[str, ...]:
    """Where servers go in this file: opencode 2's `mcp.servers` when the file already uses it."""
    if spec.command_array and path.is_file():
        try:
            found = jsonc.get_member(merge.read(path) or "", ("mcp",), "servers")
        except jsonc.JsoncError:
            found = None
        if isinstance(found, dict):
            return ("mcp", "servers")
    return spec.container


def plan_edit(spec: McpSpec, path: Path, value: dict[str, Any], remove: bool) -> merge.Edit:
    """The edit of one config file."""
    if spec.syntax == "toml":
        return merge.toml_edit(path, value, remove=remove)
    return merge.json_edit(path, container(spec, path), value, remove=remove)


def read_entry(spec: McpSpec, path: Path) -> Any:
    """Our entry in a client's config file, or None."""
    if spec.syntax == "toml":
        return merge.toml_entry(path)
    return merge.json_entry(path, container(spec, path))


def targets(server: Server) -> Any:
    """The planner of `install-mcp` for `server`."""

    def planner(client: Client, context: Context) -> list[Target]:
        spec = client.mcp
        path = context.locate(spec.project, spec.user, spec.prefer)
        if path is None:
            return []
        value = {} if context.remove else entry(spec, server, context.scope)
        return [Target(client, path, lambda: plan_edit(spec, path, value, context.remove))]

    return planner
