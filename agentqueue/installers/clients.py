"""The agent clients agentqueue wires itself into: one table, one row per client.

Each row says where the client reads MCP servers (project file, user file, the key that holds
them, how a stdio and an HTTP entry look), where it reads always-on rules, and where it finds
Agent Skills. The planners in `mcp_config`, `rules` and `skills` only read this table, so a
client's quirks live here and nowhere else. Each row cites the client's own documentation.
User-level paths are functions of `paths.home()` and the environment, never constants, so a
test's HOME is honoured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from agentqueue.errors import InvalidArgument
from agentqueue.installers.paths import app_data, codex_home, home, xdg_config_home

UserPath = Callable[[], Path]


class Scope(StrEnum):
    """Where an install writes: the project (committed) or the user's own config."""

    PROJECT = "project"
    USER = "user"


@dataclass(frozen=True)
class McpSpec:
    """How a client is told about an MCP server."""

    project: str | None
    """Config file under the project root (None: the client has no project-level file)."""
    user: UserPath | None
    container: tuple[str, ...] = ("mcpServers",)
    """The keys leading to the object of servers."""
    syntax: str = "json"
    """`json` (JSONC allowed, comments kept) or `toml`."""
    prefer: tuple[str, ...] = ()
    """Project files that win over `project` when one exists (opencode.jsonc)."""
    stdio_type: str | None = None
    """The `type` of a stdio entry, where the client wants one."""
    command_array: bool = False
    """The command and its arguments as one `command` array (no `args`)."""
    stdio_extra: dict[str, Any] = field(default_factory=dict)
    http: bool = True
    """Whether the file can hold a remote server at all."""
    http_type: str | None = None
    url_key: str = "url"
    token: str | None = "${env:VAR}"
    """How the header refers to the key's environment variable (VAR); None: no header."""
    bearer_env_key: str | None = None
    """Codex: the entry names the variable instead of carrying a header."""
    note: str | None = None


@dataclass(frozen=True)
class RulesSpec:
    """Where a client reads always-on instructions."""

    project: str | None
    user: UserPath | None
    frontmatter: str | None = None
    """None: a managed block inside a shared Markdown file; else a file of our own that
    starts with this YAML frontmatter."""
    prefer: tuple[str, ...] = ()
    """Existing files that win over `project`, in the client's own order (Zed's first match)."""


@dataclass(frozen=True)
class SkillsSpec:
    """Where a client looks for Agent Skills folders."""

    project: str | None
    user: UserPath | None


@dataclass(frozen=True)
class Client:
    """One agent client."""

    name: str
    title: str
    aliases: tuple[str, ...]
    mcp: McpSpec
    rules: RulesSpec | None
    skills: SkillsSpec | None
    markers: tuple[str, ...]
    """Project files or folders that show the client is used here (`--client auto`)."""
    user_markers: tuple[UserPath, ...]
    """User-level paths that show the client is installed."""


RULES_DESCRIPTION = (
    "agentqueue: how to add jobs, write handlers, and use steps, waits, tokens and cron "
    "correctly in this project"
)
_CURSOR_RULE = f'description: "{RULES_DESCRIPTION}"\nalwaysApply: true'
_COPILOT_RULE = f'applyTo: "**"\ndescription: "{RULES_DESCRIPTION}"'
_WINDSURF_RULE = f'trigger: always_on\ndescription: "{RULES_DESCRIPTION}"'
_AGENTS_SKILLS = ".agents/skills"

CLIENTS: tuple[Client, ...] = (
    Client(
        # code.claude.com/docs/en/mcp: `.mcp.json` (project) / `~/.claude.json` (user),
        # `mcpServers`, remote `type: "http"` + `url` + `headers`, `${VAR}` expanded;
        # code.claude.com/docs/en/memory (CLAUDE.md), /skills (`.claude/skills/<name>/`).
        name="claude-code",
        title="Claude Code",
        aliases=("claude", "claudecode"),
        mcp=McpSpec(".mcp.json", lambda: home() / ".claude.json", http_type="http", token="${VAR}"),
        rules=RulesSpec("CLAUDE.md", lambda: home() / ".claude" / "CLAUDE.md"),
        skills=SkillsSpec(".claude/skills", lambda: home() / ".claude" / "skills"),
        markers=(".claude", ".mcp.json", "CLAUDE.md"),
        user_markers=(lambda: home() / ".claude", lambda: home() / ".claude.json"),
    ),
    Client(
        # modelcontextprotocol.io quickstart + the SDK's `mcp install`: the OS app-data
        # `Claude/claude_desktop_config.json`, `mcpServers`, stdio only (remote servers are
        # added under Settings → Connectors); GUI apps lack the shell PATH → absolute command.
        name="claude-desktop",
        title="Claude Desktop",
        aliases=("desktop",),
        mcp=McpSpec(
            None,
            lambda: app_data() / "Claude" / "claude_desktop_config.json",
            http=False,
            note="Claude Desktop takes remote servers in Settings → Connectors, not in its file",
        ),
        rules=None,
        skills=None,
        markers=(),
        user_markers=(lambda: app_data() / "Claude",),
    ),
    Client(
        # cursor.com/docs/mcp: `.cursor/mcp.json` / `~/.cursor/mcp.json`, `mcpServers`,
        # remote `url` + `headers`, `${env:NAME}`; cursor.com/docs/context/rules: `.mdc` with
        # `description` / `globs` / `alwaysApply` (without frontmatter a rule is manual-only);
        # cursor.com/docs/context/skills: `.agents/skills/` read, `~/.cursor/skills/`.
        name="cursor",
        title="Cursor",
        aliases=(),
        mcp=McpSpec(".cursor/mcp.json", lambda: home() / ".cursor" / "mcp.json"),
        rules=RulesSpec(".cursor/rules/agentqueue.mdc", None, frontmatter=_CURSOR_RULE),
        skills=SkillsSpec(_AGENTS_SKILLS, lambda: home() / ".cursor" / "skills"),
        markers=(".cursor", ".cursorrules"),
        user_markers=(lambda: home() / ".cursor",),
    ),
    Client(
        # code.visualstudio.com/docs/copilot/reference/mcp-configuration: `.vscode/mcp.json`
        # or the profile's `mcp.json`, top-level **`servers`**, stdio needs `"type": "stdio"`,
        # remote `type: "http"`; vscode-docs custom-instructions: `*.instructions.md` with
        # `applyTo`; agent-skills: `.agents/skills/`, `~/.copilot/skills/`.
        name="vscode",
        title="VS Code / GitHub Copilot",
        aliases=("copilot", "code", "vs-code"),
        mcp=McpSpec(
            ".vscode/mcp.json",
            lambda: app_data() / "Code" / "User" / "mcp.json",
            container=("servers",),
            stdio_type="stdio",
            http_type="http",
        ),
        rules=RulesSpec(
            ".github/instructions/agentqueue.instructions.md",
            lambda: home() / ".copilot" / "instructions" / "agentqueue.instructions.md",
            frontmatter=_COPILOT_RULE,
        ),
        skills=SkillsSpec(_AGENTS_SKILLS, lambda: home() / ".copilot" / "skills"),
        markers=(".vscode", ".github/copilot-instructions.md", ".github/instructions"),
        user_markers=(lambda: app_data() / "Code",),
    ),
    Client(
        # docs.windsurf.com/windsurf/cascade/mcp: one global `~/.codeium/windsurf/
        # mcp_config.json`, `mcpServers`, remote **`serverUrl`**, `${env:VAR}`;
        # /cascade/memories: `.windsurf/rules/*.md` with `trigger`, global_rules.md;
        # /cascade/skills: `.windsurf/skills/`, `~/.codeium/windsurf/skills/`.
        name="windsurf",
        title="Windsurf",
        aliases=("cascade", "devin-desktop"),
        mcp=McpSpec(
            None,
            lambda: home() / ".codeium" / "windsurf" / "mcp_config.json",
            url_key="serverUrl",
        ),
        rules=RulesSpec(
            ".windsurf/rules/agentqueue.md",
            lambda: home() / ".codeium" / "windsurf" / "memories" / "global_rules.md",
            frontmatter=_WINDSURF_RULE,
        ),
        skills=SkillsSpec(".windsurf/skills", lambda: home() / ".codeium" / "windsurf" / "skills"),
        markers=(".windsurf", ".windsurfrules"),
        user_markers=(lambda: home() / ".codeium" / "windsurf",),
    ),
    Client(
        # developers.openai.com/codex/mcp: `[mcp_servers.<name>]` in `~/.codex/config.toml`
        # (`$CODEX_HOME`) or `.codex/config.toml` of a trusted project; remote `url` +
        # `bearer_token_env_var` (an inline token is rejected); /guides/agents-md: AGENTS.md;
        # /skills: `.agents/skills/`, `~/.agents/skills/`.
        name="codex",
        title="OpenAI Codex",
        aliases=("openai-codex",),
        mcp=McpSpec(
            ".codex/config.toml",
            lambda: codex_home() / "config.toml",
            container=("mcp_servers",),
            syntax="toml",
            token=None,
            bearer_env_key="bearer_token_env_var",
            note="Codex reads a project's .codex/config.toml only once the project is trusted",
        ),
        rules=RulesSpec("AGENTS.md", lambda: codex_home() / "AGENTS.md"),
        skills=SkillsSpec(_AGENTS_SKILLS, lambda: home() / ".agents" / "skills"),
        markers=(".codex", "AGENTS.md"),
        user_markers=(codex_home,),
    ),
    Client(
        # google-gemini/gemini-cli docs/tools/mcp-server.md: `.gemini/settings.json` /
        # `~/.gemini/settings.json`, `mcpServers`; `gemini mcp add -t http` writes `url` with
        # `type: "http"` (a bare `url` is SSE in older versions); docs/cli/gemini-md.md, skills.md.
        name="gemini",
        title="Gemini CLI",
        aliases=("gemini-cli",),
        mcp=McpSpec(
            ".gemini/settings.json",
            lambda: home() / ".gemini" / "settings.json",
            http_type="http",
            token="${VAR}",
        ),
        rules=RulesSpec("GEMINI.md", lambda: home() / ".gemini" / "GEMINI.md"),
        skills=SkillsSpec(_AGENTS_SKILLS, lambda: home() / ".gemini" / "skills"),
        markers=(".gemini", "GEMINI.md"),
        user_markers=(lambda: home() / ".gemini",),
    ),
    Client(
        # zed.dev/docs/ai/mcp: `context_servers` in `.zed/settings.json` or
        # `~/.config/zed/settings.json` (JSONC), stdio `command`/`args`/`env`, remote `url` +
        # `headers` (no variable expansion, so no header is written); zed.dev/docs/ai/rules:
        # only the first of .rules, .cursorrules, … AGENTS.md, CLAUDE.md, GEMINI.md is read.
        name="zed",
        title="Zed",
        aliases=(),
        mcp=McpSpec(
            ".zed/settings.json",
            lambda: xdg_config_home() / "zed" / "settings.json",
            container=("context_servers",),
            stdio_extra={"env": {}},
            token=None,
            note="Zed does not expand variables: add an Authorization header by hand if the "
            "server needs a key",
        ),
        rules=RulesSpec(
            "AGENTS.md",
            None,
            prefer=(
                ".rules",
                ".cursorrules",
                ".windsurfrules",
                ".clinerules",
                ".github/copilot-instructions.md",
                "AGENT.md",
                "AGENTS.md",
                "CLAUDE.md",
                "GEMINI.md",
            ),
        ),
        skills=None,
        markers=(".zed",),
        user_markers=(lambda: xdg_config_home() / "zed",),
    ),
    Client(
        # opencode.ai/docs/mcp-servers: `opencode.json(c)` / `~/.config/opencode/`, key `mcp`,
        # local `{"type": "local", "command": [...], "enabled": true}` (no `args`), remote
        # `type: "remote"`, `{env:VAR}`; opencode 2 nests under `mcp.servers` (kept when
        # found); opencode.ai/docs/rules (AGENTS.md), /skills (`.agents/skills/`).
        name="opencode",
        title="opencode",
        aliases=("open-code",),
        mcp=McpSpec(
            "opencode.json",
            lambda: xdg_config_home() / "opencode" / "opencode.json",
            container=("mcp",),
            prefer=("opencode.json", "opencode.jsonc"),
            stdio_type="local",
            command_array=True,
            stdio_extra={"enabled": True},
            http_type="remote",
            token="{env:VAR}",
        ),
        rules=RulesSpec("AGENTS.md", lambda: xdg_config_home() / "opencode" / "AGENTS.md"),
        skills=SkillsSpec(_AGENTS_SKILLS, lambda: xdg_config_home() / "opencode" / "skills"),
        markers=("opencode.json", "opencode.jsonc", ".opencode"),
        user_markers=(lambda: xdg_config_home() / "opencode",),
    ),
)


def names() -> list[str]:
    """Every client's name, in table order."""
    return [client.name for client in CLIENTS]


def find(name: str) -> Client:
    """The client called `name` (or one of its aliases).

    Raises:
        InvalidArgument: no such client; the message lists the names.
    """
    wanted = name.strip().lower()
    for client in CLIENTS:
        if wanted == client.name or wanted in client.aliases:
            return client
    raise InvalidArgument(f"unknown client {name!r}: use one of {', '.join(names())}, all or auto")


def detected(scope: Scope, root: Path) -> list[Client]:
    """The clients whose marks are present: in `root` (project scope) or the user's dirs."""
    found: list[Client] = []
    for client in CLIENTS:
        if scope is Scope.PROJECT:
            present = any((root / marker).exists() for marker in client.markers)
        else:
            present = any(marker().exists() for marker in client.user_markers)
        if present:
            found.append(client)
    return found


def select(values: list[str] | None, scope: Scope, root: Path) -> list[Client]:
    """The clients named on the command line: names, aliases, `all` or `auto`.

    Raises:
        InvalidArgument: an unknown name, or `auto` found none.
    """
    chosen: list[Client] = []
    for value in values or ["auto"]:
        if value == "all":
            picked = list(CLIENTS)
        elif value == "auto":
            picked = detected(scope, root)
            if not picked:
                where = root if scope is Scope.PROJECT else "your home directory"
                raise InvalidArgument(
                    f"no agent client found in {where}: name one with --client "
                    f"({', '.join(names())}) or all"
                )
        else:
            picked = [find(value)]
        chosen.extend(client for client in picked if client not in chosen)
    return chosen
