"""Finished jobs per time bucket: what the dashboard's throughput and failure-rate charts show.

The store counts jobs by their `completed_at` from its finished-jobs index (`Backend.
finished_counts`); `fold` turns those rows into a gap-free `Throughput`. `ThroughputReader`
is the server's reader: a bucket that closed a while ago cannot change any more (short of a
purge or a retry), so it keeps those and asks the store only for the last few buckets. A
dashboard refreshing on every event (at most 4 times a second) then costs a scan of the last
minute or two, not of the whole hour. Nothing newer is held back: answering from memory for a
second or two would leave a chart stale when no later event comes to refresh it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from agentqueue.errors import InvalidArgument
from agentqueue.models import Throughput, ThroughputBucket
from agentqueue.states import JobStatus

if TYPE_CHECKING:
    from agentqueue.queue import Queue

MAX_BUCKETS = 1440
"""The most buckets one read returns (a day of minutes)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_of(at: datetime, bucket_seconds: int) -> int:
    """The number of the bucket holding `at`: floor(epoch seconds / bucket_seconds)."""
    return math.floor((at - _EPOCH).total_seconds() / bucket_seconds)


def bucket_start(number: int, bucket_seconds: int) -> datetime:
    """The start of bucket `number`."""
    return _EPOCH + timedelta(seconds=number * bucket_seconds)


def check_window(buckets: int, bucket_seconds: int) -> None:
    """Refuse a window the charts cannot mean.

    Raises:
        InvalidArgument: buckets not in 1..MAX_BUCKETS or bucket_seconds not in 1..86400.
    """
    if not 1 <= buckets <= MAX_BUCKETS:
        raise InvalidArgument(f"buckets must be 1 to {MAX_BUCKETS}, not {buckets}")
    if not 1 <= bucket_seconds <= 86_400:
        raise InvalidArgument(f"bucket_seconds must be 1 to 86400, not {bucket_seconds}")


def fold(
    rows: Iterable[tuple[int, JobStatus, int]],
    *,
    first: int,
    last: int,
    bucket_seconds: int,
    until: datetime,
) -> Throughput:
    """Turn (bucket, status, count) rows into one bucket per number from `first` to `last`."""
    buckets = {
        number: ThroughputBucket(start=bucket_start(number, bucket_seconds))
        for number in range(first, last + 1)
    }
    for number, status, count in rows:
        bucket = buckets.get(number)
        if bucket is None:  # finished after `until` was read (a clock ahead, a late commit)
            continue
        if status is JobStatus.COMPLETED:
            bucket.completed += count
        elif status is JobStatus.FAILED:
            bucket.failed += count
        elif status is JobStatus.CANCELLED:
            bucket.cancelled += count
    return Throughput(
        bucket_seconds=bucket_seconds,
        since=bucket_start(first, bucket_seconds),
        until=until,
        buckets=list(buckets.values()),
    )


class ThroughputReader:
    """A server's cached reader of `Queue.throughput` (see the module docstring).

    `settle` is how long after a bucket ends it may still change: a job's `completed_at` is
    stamped before its transaction commits, and worker clocks differ a little.
    """

    def __init__(
        self,
        queue: Queue,
        *,
        bucket_seconds: int = 60,
        settle: float = 15.0,
    ) -> None:
        self.queue = queue
        self.bucket_seconds = bucket_seconds
        self.settle = settle
        self._closed: dict[int, ThroughputBucket] = {}

    async def read(self, buckets: int = 60) -> Throughput:
        """The last `buckets` buckets up to now, the newest one still filling."""
        check_window(buckets, self.bucket_seconds)
        width = self.bucket_seconds
        until = self.queue.clock.now()
        last = bucket_of(until, width)
        first = last - buckets + 1
        settled = bucket_of(until - timedelta(seconds=self.settle), width) - 1
        self._closed = {n: b for n, b in self._closed.items() if n >= first}
        missing = [n for n in range(first, last + 1) if n > settled or n not in self._closed]
        fresh = await self.queue.throughput(
            buckets=last - missing[0] + 1, bucket_seconds=width, until=until
        )
        merged = {bucket_of(b.start, width): b for b in fresh.buckets}
        for number, bucket in merged.items():
            if number <= settled:
                self._closed[number] = bucket
        return Throughput(
            bucket_seconds=width,
            since=bucket_start(first, width),
            until=until,
            buckets=[merged.get(n) or self._closed[n] for n in range(first, last + 1)],
        )
