"""Jobs shared by several worker processes on one PostgreSQL database.

export AGENTQUEUE_URL=postgresql://user:password@localhost:5432/app
agentqueue worker --app tasks:queue --concurrency 4     # as many of these as you like
"""

from __future__ import annotations

import asyncio
import os
import socket

from pydantic import BaseModel, Field

from agentqueue import JobContext, Queue

queue = Queue()  # $AGENTQUEUE_URL: every process that uses the same URL shares the queue


class Thumbnail(BaseModel):
    """An image to shrink (pretend work)."""

    image: str
    width: int = Field(default=128, ge=16, le=2048)
    seconds: float = Field(default=0.2, ge=0, le=10, description="how long the work takes")


@queue.handler("thumbnail", description="Make a thumbnail", max_attempts=3, timeout=60)
async def thumbnail(task: Thumbnail, ctx: JobContext) -> dict[str, object]:
    """Pretend to resize; say which worker process did it."""
    await asyncio.sleep(task.seconds)
    return {
        "image": task.image,
        "width": task.width,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
