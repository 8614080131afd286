"""A small app for the CLI tests: `agentqueue worker --app aq_cli_demo_app:queue --url ...`.

The queue is built on `memory://`; every test re-targets it with `--url` (Queue.use_url).
"""

from __future__ import annotations

import logging

from pydantic import BaseModel

from agentqueue import JobContext, Queue

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


@queue.handler("count_up", description="Report progress, then finish.")
async def count_up(payload: dict[str, int], ctx: JobContext) -> int:
    """Report `half way` at 50 %, then return the payload's `steps`."""
    ctx.set_progress(50, "half way")
    return payload.get("steps", 2)


log = logging.getLogger("aq_cli_demo_app")
SECRET_URL = "postgresql://app:hunter2@db.internal/jobs"
SECRET_KEY = "aq_0123456789ab_s3cr3tS3cr3tS3cr3tS3cr3tS3cr3t"


@queue.handler("chatty", description="Log a line with secrets in it (async).")
async def chatty(payload: dict[str, object]) -> None:
    """Log the store URL and an API key, as careless code does."""
    log.info("connecting to %s with key %s", SECRET_URL, SECRET_KEY)


@queue.handler("chatty_sync", description="Log a line with secrets in it (in a thread).")
def chatty_sync(payload: dict[str, object]) -> None:
    """The same from a sync handler (it runs in a thread)."""
    log.info("calling https://api.example.com/?token=%s", SECRET_KEY)
