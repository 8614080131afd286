"""Enqueue posts for approval, one job per title, and print each job's id.

python request.py "Hello world" "Long read"
"""

from __future__ import annotations

import asyncio
import sys

from jobs import queue


async def main(titles: list[str]) -> None:
    """Add a publish_post job per title."""
    async with queue:
        for title in titles:
            print(await queue.add_job("publish_post", {"title": title, "body": "(draft)"}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
