"""An enqueuer process for the contention tests: add jobs one call at a time, report the errors.

    python -m tests.reliability.enqueuer --jobs 300

The store is AGENTQUEUE_URL. Each job is one `add_job` (the most lock traffic per job). The
last line of output is `RESULT {"ids": [...], "errors": [...]}`: every error a call raised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

from agentqueue import AgentQueueError, Queue
from tests.acceptance import ledger


async def main(jobs: int) -> None:
    """Enqueue `jobs` work jobs one by one; print the ids and the errors raised to the caller."""
    ids: list[int] = []
    errors: list[str] = []
    async with Queue(os.environ["AGENTQUEUE_URL"]) as queue:
        ledger.record(os.environ["AGENTQUEUE_LEDGER"], 0, 0, "enqueuer-ready")
        for _ in range(jobs):
            try:
                ids.append(await queue.add_job("work", {"sleep_ms": 0}))
            except AgentQueueError as error:
                errors.append(f"{error.code}: {error.message}")
    print("RESULT " + json.dumps({"ids": ids, "errors": errors}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    asyncio.run(main(parser.parse_args().jobs))
