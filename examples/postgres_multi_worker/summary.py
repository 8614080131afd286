"""Which worker process ran how many of the completed thumbnail jobs.

python summary.py
"""

from __future__ import annotations

import asyncio
from collections import Counter

from tasks import queue


async def main() -> None:
    """Page through completed jobs and count them per worker."""
    async with queue:
        per_worker: Counter[str] = Counter()
        cursor = None
        while True:
            page = await queue.list_jobs(
                status=["completed"], job_type="thumbnail", limit=500, cursor=cursor
            )
            per_worker.update(str(job.output["worker"]) for job in page.items if job.output)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        for worker, count in sorted(per_worker.items()):
            print(f"{worker}\t{count}")
        print(f"live workers: {len(await queue.list_workers())}")


if __name__ == "__main__":
    asyncio.run(main())
