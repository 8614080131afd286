"""Every CLI command, MCP tool and REST route the docs name exists.

What counts as naming one (README.md and docs/, not the generated reference pages):
- a CLI command: `agentqueue …` at the start of a shell line of a code block (also after `;`,
  `&&`, `|` or a `$ ` prompt) or at the start of an inline code span; its subcommand path and
  every `--option` it uses must exist;
- an MCP tool: `>>> name {…}` in a transcript block, `mcp__agentqueue__name`, or a code span
  right before or after the word "tool" (`` `wait_for_job` tool``, ``tool `add_job` ``);
- a REST route: `METHOD /path` anywhere (`GET /api/v1/jobs/{id}`, `POST/GET /api/v1/cron`); a
  concrete segment (`42`) matches a path parameter, any `{placeholder}` matches any parameter.
"""

from __future__ import annotations

import functools
import re
import shlex
from typing import Any

import pytest
import typer.main

from agentqueue.cli import app as cli_app
from tests.docs.docs_helpers import code_blocks, generator, inline_code, pages

SHELL = {"", "sh", "bash", "shell", "console", "text"}
_SPLIT = re.compile(r"\s*(?:;|&&|\|\||\|)\s*")
_ROUTE = re.compile(
    r"\b(?P<methods>(?:GET|POST|PATCH|PUT|DELETE)(?:/(?:GET|POST|PATCH|PUT|DELETE))*)"
    r"\s+(?P<path>/[^\s`),;'\"]*)"
)
_TOOL_PATTERNS = [
    re.compile(r"^>>> (\w+) [{]", re.MULTILINE),
    re.compile(r"mcp__agentqueue__(\w+)"),
    re.compile(r"`(\w+)`\s+(?:MCP\s+)?tools?\b"),
    re.compile(r"\btools?\s+`(\w+)`"),
]


# -- what the docs name -------------------------------------------------------------------------
def documented_commands() -> list[tuple[str, list[str]]]:
    """(page, argv after `agentqueue`) of every documented command line."""
    found: list[tuple[str, list[str]]] = []
    for page, text in pages().items():
        lines = [
            line
            for block in code_blocks(page, text)
            if block.language in SHELL
            for line in block.text.splitlines()
        ]
        lines += [span for span in inline_code(text) if span.startswith("agentqueue ")]
        for line in lines:
            for part in _SPLIT.split(line.split(" #", 1)[0].strip()):
                part = part.removeprefix("$ ").strip()
                if part.startswith("agentqueue ") or part == "agentqueue":
                    found.append((page, _words(part)[1:]))
    return found


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote in prose: the words before it still count
        return command.split()


def documented_tools() -> list[tuple[str, str]]:
    """(page, tool name) of every documented MCP tool."""
    return [
        (page, name)
        for page, text in pages().items()
        for pattern in _TOOL_PATTERNS
        for name in pattern.findall(text)
    ]


def documented_routes() -> list[tuple[str, str, str]]:
    """(page, METHOD, path) of every documented route."""
    found: list[tuple[str, str, str]] = []
    for page, text in pages().items():
        for match in _ROUTE.finditer(text.replace("\\|", "|")):
            path = match["path"].split("?")[0].rstrip(".:")
            found += [(page, method, path) for method in match["methods"].split("/")]
    return found


# -- what exists --------------------------------------------------------------------------------
@functools.cache
def cli_root() -> Any:
    """The click command tree of the typer app."""
    return typer.main.get_command(cli_app)


def command_problem(argv: list[str]) -> str | None:
    """Why `agentqueue <argv>` names no command or option, or None when it does."""
    command, path = cli_root(), ["agentqueue"]
    words = list(argv)
    while getattr(command, "commands", None) and words and not words[0].startswith("-"):
        if words[0] in ("…", "..."):  # prose: "`agentqueue cron …`" names the group only
            break
        name = words.pop(0)
        if name not in command.commands:
            return f"no command `{' '.join([*path, name])}`"
        command, path = command.commands[name], [*path, name]
    options = {"--help"} | {
        opt for param in command.params for opt in [*param.opts, *param.secondary_opts]
    }
    for word in words:
        option = word.split("=", 1)[0]
        if option.startswith("--") and option not in options:
            return f"`{' '.join(path)}` has no option {option}"
    return None


@functools.cache
def tool_names() -> frozenset[str]:
    """The MCP server's tools as a client lists them."""
    return frozenset(tool.name for tool in generator().mcp_tools())


def app_routes() -> tuple[Any, ...]:
    """The top-level routes of the REST app (dashboard and included routers too)."""
    return tuple(generator().rest_app().routes)


def route_exists(method: str, path: str) -> bool:
    """Whether the app's router sends `method path` to a route (a placeholder such as `{id}`
    fills a path parameter as any other segment would)."""
    from starlette.routing import Match

    # `1` fills any parameter, an `{id:int}` one too.
    concrete = re.sub(r"\{[^}/]*\}", "1", path)
    scope = {"type": "http", "method": method, "path": concrete, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in app_routes())


# -- the tests ----------------------------------------------------------------------------------
def test_every_documented_cli_command_and_option_exists() -> None:
    commands = documented_commands()
    assert len(commands) > 20, "the scan found too few commands: is the pattern broken?"
    problems = sorted(
        {f"{page}: {problem}" for page, argv in commands if (problem := command_problem(argv))}
    )
    assert problems == []


def test_every_documented_mcp_tool_exists() -> None:
    tools = documented_tools()
    assert len(tools) > 5, "the scan found too few tools: is the pattern broken?"
    unknown = sorted({f"{page}: {name}" for page, name in tools if name not in tool_names()})
    assert unknown == []


def test_every_documented_rest_route_exists() -> None:
    routes = documented_routes()
    assert len(routes) > 20, "the scan found too few routes: is the pattern broken?"
    missing = sorted(
        {
            f"{page}: {method} {path}"
            for page, method, path in routes
            if not route_exists(method, path)
        }
    )
    assert missing == []


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["jobs", "list", "--status", "failed"], None),
        (["jobs", "frobnicate"], "no command `agentqueue jobs frobnicate`"),
        (["worker", "--no-such-flag"], "`agentqueue worker` has no option --no-such-flag"),
        (["--version"], None),
        (["cron", "…"], None),
    ],
)
def test_the_command_check_tells_real_commands_from_made_up_ones(
    argv: list[str], problem: str | None
) -> None:
    assert command_problem(argv) == problem


def test_the_route_check_tells_real_routes_from_made_up_ones() -> None:
    assert route_exists("GET", "/api/v1/jobs/42/events")
    assert route_exists("DELETE", "/api/v1/limits/{job_type|group}/{key}")
    assert route_exists("GET", "/api/v1/jobs/{id}")
    assert not route_exists("DELETE", "/api/v1/jobs/42")
    assert not route_exists("GET", "/api/v1/nope")


def test_the_scanners_read_code_blocks_spans_and_prose() -> None:
    text = (
        "Run `agentqueue stats --json` or\n\n```sh\n$ agentqueue jobs show 4 ; agentqueue doctor\n"
        "```\n\nCall the `wait_for_job` tool, then `GET /api/v1/jobs/{id}`\n"
        "and POST/GET /api/v1/cron.\n"
    )
    blocks = code_blocks("x.md", text)
    assert [b.language for b in blocks] == ["sh"]
    assert inline_code(text)[0] == "agentqueue stats --json"
    assert [m.group(1) for p in _TOOL_PATTERNS for m in p.finditer(text)] == ["wait_for_job"]
    assert [(m["methods"], m["path"]) for m in _ROUTE.finditer(text)] == [
        ("GET", "/api/v1/jobs/{id}"),
        ("POST/GET", "/api/v1/cron."),
    ]


def test_every_tool_count_the_docs_give_is_the_servers() -> None:
    counts = [
        (page, int(number))
        for page, text in pages().items()
        # "caps all servers at 100 tools" is a client's limit, not a count of ours
        for number in re.findall(r"(?<!at )\b(\d+) (?:MCP )?tools\b", text)
    ]
    assert counts, "no page says how many tools there are: is the pattern broken?"
    wrong = [f"{page}: {n}" for page, n in counts if n != len(tool_names())]
    assert wrong == [], f"the server has {len(tool_names())} tools"
