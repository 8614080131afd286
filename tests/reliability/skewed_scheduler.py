"""A scheduler process whose wall clock is off: `python -m tests.reliability.skewed_scheduler
OFFSET_SECONDS [INTERVAL]` runs supervisor passes (cron ticks included) on AGENTQUEUE_URL.

The clock is a `SystemClock` moved by the offset, so the queue treats it as the real clock (the
store keeps using its own time where it has one, as it would on a machine whose clock drifted)
while everything the core computes from `queue.clock` sees the skewed time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime, timedelta

from agentqueue import Queue
from agentqueue.clock import SystemClock


class SkewedClock(SystemClock):
    """The system clock, `offset` seconds off."""

    def __init__(self, offset: float) -> None:
        self.offset = timedelta(seconds=offset)

    def now(self) -> datetime:
        """The skewed time."""
        return super().now() + self.offset


async def main(offset: float, interval: float) -> None:
    """Run supervisor passes every `interval` seconds until SIGTERM."""
    async with Queue(os.environ["AGENTQUEUE_URL"], clock=SkewedClock(offset)) as queue:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print(f"scheduler {os.getpid()} skewed by {offset:+} s", flush=True)
        await queue.supervisor(interval=interval).run(stop)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.05))
