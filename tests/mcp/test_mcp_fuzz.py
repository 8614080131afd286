"""A property test: every tool gets arguments generated from its own input schema, and
malformed ones (wrong types, unknown fields, junk), and the session survives every call —
each answer is a result or a tool error, never a crash, a hang or a stack trace."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.client import Client

from agentqueue import Queue
from tests.mcp.conftest import connect

pytestmark = pytest.mark.slow

SKIP_WAITING = {"wait_for_job"}
"""wait_for_job is fuzzed with a short timeout (it may legitimately wait)."""

JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def from_schema(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """Values that fit a JSON Schema of the shapes the tools use (types, enums, bounds,
    anyOf, $ref, objects with required fields): a small generator, enough to reach past
    argument validation into every tool."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of(*(from_schema(option, defs) for option in schema["anyOf"]))
    kind = schema.get("type")
    if kind == "string":
        return st.text(
            min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 30), 30)
        )
    if kind == "integer":
        return st.integers(schema.get("minimum", -5), min(schema.get("maximum", 10**6), 10**6))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -5.0))
        return st.floats(
            low, min(schema.get("maximum", 1e6), 1e6), exclude_min="exclusiveMinimum" in schema
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {}), defs)
        return st.lists(
            items, min_size=schema.get("minLength", schema.get("minItems", 0)), max_size=3
        )
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        fixed = {
            name: from_schema(sub, defs) for name, sub in properties.items() if name in required
        }
        optional = {
            name: from_schema(sub, defs) for name, sub in properties.items() if name not in required
        }
        return st.fixed_dictionaries(fixed, optional=optional)
    return JUNK


def malformed(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments that break the schema: junk values for its fields, and unknown fields."""
    names = list(schema.get("properties", {})) or ["x"]
    return st.dictionaries(st.sampled_from([*names, "not_a_field"]), JUNK, max_size=4)


class draw_examples:
    """Draws hypothesis examples of a strategy (hypothesis drives sync functions; the tool
    calls then run on the test's loop)."""

    def __init__(self, strategy: st.SearchStrategy[dict[str, Any]]) -> None:
        self.drawn: list[dict[str, Any]] = []

        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(arguments=strategy)
        def collect(arguments: dict[str, Any]) -> None:
            self.drawn.append(arguments)

        self.run = collect


async def exercise(client: Client, name: str, arguments: dict[str, Any]) -> bool:
    """One call: any answer will do, as long as it is an answer and not a traceback. Returns
    whether the tool succeeded."""
    if name in SKIP_WAITING and isinstance(arguments, dict):
        arguments = {**arguments, "timeout_seconds": 0.05}
    result = await asyncio.wait_for(client.call_tool(name, arguments), 30)
    if result.is_error:
        text = result.content[0].text  # type: ignore[union-attr]
        assert "Traceback" not in text, text
        return False
    assert result.structured_content is not None
    return True


async def test_every_tool_survives_generated_and_malformed_arguments(sqlite_url: str) -> None:
    async with Queue(sqlite_url) as queue, connect(queue, "legacy") as client:
        await queue.add_job("report", {"n": 1})
        tools = (await client.list_tools()).tools
        assert len(tools) == 26
        loop = asyncio.get_running_loop()
        succeeded: dict[str, int] = {}
        for tool in tools:
            schema = dict(tool.input_schema)
            strategy = st.one_of(from_schema(schema), malformed(schema))
            calls = draw_examples(strategy)
            await loop.run_in_executor(None, calls.run)
            for arguments in calls.drawn:
                if await exercise(client, tool.name, arguments):
                    succeeded[tool.name] = succeeded.get(tool.name, 0) + 1
        # Generated arguments reach the tools themselves, not only their validation.
        assert len(succeeded) >= 15, succeeded
        # The session still works after everything.
        assert (await client.call_tool("queue_stats", {})).is_error is False
