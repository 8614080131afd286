"""Add N thumbnail jobs in one batch (one statement, all or nothing).

python enqueue.py 100
"""

from __future__ import annotations

import asyncio
import sys

from tasks import queue


async def main(count: int) -> None:
    """Add the jobs and print how many."""
    async with queue:
        ids = await queue.add_jobs(
            [{"job_type": "thumbnail", "payload": {"image": f"img-{n}.png"}} for n in range(count)]
        )
        print(f"added {len(ids)} jobs")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
