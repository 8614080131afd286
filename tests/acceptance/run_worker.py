"""Run a worker of `tests.acceptance.app` in this process, with short test timings.

    python -m tests.acceptance.run_worker --concurrency 4 --lease 2 --shutdown-timeout 5

The store is AGENTQUEUE_URL. Once the queue is open a `ready` row (job 0) goes to the ledger, so
a test can wait for its workers before it enqueues. SIGTERM drains; exit code 0 on a clean stop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from tests.acceptance import ledger
from tests.acceptance.app import queue


async def main(args: argparse.Namespace) -> None:
    """Open the queue, announce readiness in the ledger, run the worker until it is stopped."""
    await queue.open()
    worker = queue.worker(
        concurrency=args.concurrency,
        lease_seconds=args.lease,
        heartbeat_interval=args.lease / 4,
        rescue_interval=args.lease / 4,
        shutdown_timeout=args.shutdown_timeout,
        poll_interval=args.poll_interval,
    )
    ledger.record(os.environ["AGENTQUEUE_LEDGER"], 0, 0, "ready")
    try:
        await worker.run()
    finally:
        await queue.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--shutdown-timeout", type=float, default=10.0)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main(parser.parse_args()))
