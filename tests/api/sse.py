"""Reading Server-Sent Events in tests (a real HTTP stream, parsed line by line)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Message:
    """One SSE message."""

    event: str
    data: Any
    id: str | None


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """Yield the messages of an SSE response (comments and pings skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                yield Message(
                    fields.get("event", "message"), json.loads(fields["data"]), fields.get("id")
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
