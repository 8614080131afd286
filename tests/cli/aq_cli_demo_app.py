"""A small app for the CLI tests: `agentqueue worker --app aq_cli_demo_app:queue --url ...`.

The queue is built on `memory://`; every test re-targets it with `--url` (Queue.use_url).
"""

from __future__ import annotations

from pydantic import BaseModel

from agentqueue import Queue

queue = Queue("memory://")

not_a_queue = "just a string"


class Greeting(BaseModel):
    """Payload of `greet`."""

    name: str


@queue.handler("greet", description="Say hello to someone.")
async def greet(payload: Greeting) -> dict[str, str]:
    """Return a greeting."""
    return {"greeting": f"hello {payload.name}"}


@queue.handler("add_numbers", queue="math", description="Add two numbers.")
def add_numbers(payload: dict[str, int]) -> int:
    """Return a + b (a sync handler: runs in a thread)."""
    return payload["a"] + payload["b"]


@queue.handler("explode", description="Always fails.", max_attempts=1)
async def explode(payload: dict[str, object]) -> None:
    """Fail on purpose."""
    raise RuntimeError("boom")
