"""Job events on the Redis store: the feed, per-job histories, and the change watcher.

Every script that changes a job appends its events to one stream, `{p}:events`, with the
explicit entry id `<event id>-0`; event ids come from INCR inside the same script, and Redis
runs one script at a time, so ids follow commit order and the feed is gap-free. A cursor is
the event id as text, and `read_events(after=c)` is `XRANGE (c-0 + COUNT n`. A job's history
is the list `{p}:job:<id>:events` of its event ids.

Filters by job type or queue read the stream in batches and filter here: O(events scanned).
A filter by job id reads that job's list: O(its events).

Wake-ups: every writing script ends by publishing the newest event id it wrote on the shard
channel `{p}:changes` (SPUBLISH; `announce()` in `_lib.lua`), once per script. One
`ChangeWatcher` per store subscribes to it on a dedicated connection and wakes every waiting
task when a newer id arrives, whichever process wrote it. Subscribed first, then one read of the
event counter: a commit before the subscription is in the counter, any later one in a message,
so no change falls between the two (the same read after every reconnect). Messages are pushed:
nothing is re-armed or read back after a wake, and the message is the id itself.

Waiters wait on an in-process signal, not on Redis: a worker cancels its wait every time it wakes
(a claim slot freed, a stop), and a cancelled read would cost a reconnect; one connection serves
every waiter of the process (worker lanes, event feeds, subscriptions). Every `QUIET_S` the
watcher reads the counter again (ids that started again from 1 after a flush or a restart
without persistence wake no one otherwise), and after `QUIET_S` of silence it pings its
connection (no reply either: it reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from agentqueue.backends.redis import codec
from agentqueue.backends.redis.client import RedisClient
from agentqueue.errors import AgentQueueError, InvalidArgument
from agentqueue.models import JobEvent

logger = logging.getLogger(__name__)

SCAN_BATCH = 500
"""Stream entries read per round trip when filtering by job type or queue."""
QUIET_S = 5.0
"""A watcher that heard nothing for this long pings its connection (and replaces it when the
reply does not come either); it also reads the event counter again this often."""
_MESSAGES = ("smessage", "message")


def event_id(cursor: str | None) -> int:
    """Read an event cursor (the event id as text; None or '' = before the first)."""
    if cursor is None or cursor == "":
        return 0
    if not cursor.isdigit():
        raise InvalidArgument(f"bad event cursor {cursor!r}: pass the cursor of a received event")
    return int(cursor)


async def read_events(
    client: RedisClient,
    *,
    after: str | None,
    limit: int,
    job_id: int | None,
    job_types: Sequence[str] | None,
    queues: Sequence[str] | None,
) -> list[JobEvent]:
    """See `Backend.read_events`."""
    start = event_id(after)
    if limit <= 0:
        return []

    def wanted(event: JobEvent) -> bool:
        return (not job_types or event.job_type in job_types) and (
            not queues or event.queue in queues
        )

    if job_id is not None:
        history = await job_events(client, job_id, after=start)
        return [event for event in history if wanted(event)][:limit]
    found: list[JobEvent] = []
    filtered = bool(job_types or queues)
    batch = max(limit, SCAN_BATCH) if filtered else limit
    key = client.keys.events
    while len(found) < limit:
        low = "-" if start == 0 else f"({start}-0"
        entries = await client.call(lambda r, low=low: r.xrange(key, low, "+", count=batch))
        for entry_id, fields in entries:
            if "control" in fields:  # a wake-up for workers, not a job event
                continue
            event = codec.event_from_entry(entry_id, fields)
            if wanted(event):
                found.append(event)
        if len(entries) < batch:
            break
        start = event_id(entries[-1][0].split("-", 1)[0])
    return found[:limit]


async def job_events(client: RedisClient, job_id: int, *, after: int = 0) -> list[JobEvent]:
    """Return one job's events after event id `after`, oldest first."""
    keys = client.keys

    async def read(r: Any) -> list[Any]:
        ids = [int(i) for i in await r.lrange(keys.job_events(job_id), 0, -1) if int(i) > after]
        if not ids:
            return []
        async with r.pipeline(transaction=False) as pipe:
            for eid in ids:
                pipe.xrange(keys.events, f"{eid}-0", f"{eid}-0")
            return await pipe.execute()

    return [
        codec.event_from_entry(entry_id, fields)
        for entries in await client.call(read)
        for entry_id, fields in entries
    ]


async def last_event_id(client: RedisClient) -> int:
    """Return the newest event id (0 when there is none)."""
    return int(await client.call(lambda r: r.get(client.keys.next_event_id)) or 0)


class ChangeWatcher:
    """Knows the newest event id this process has seen and wakes waiters when it grows.

    Writes of this process report their event ids (`seen`) and wake local waiters at once; a
    background task subscribed to the `changes` channel reports everyone else's. Start it with
    `start()` from the loop that waits.
    """

    def __init__(self, client: RedisClient, latest: int) -> None:
        self._client = client
        self.latest = latest
        """The newest event id known to be committed."""
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.live = False
        """Subscribed and caught up: `latest` follows every other process's commits (each a
        message away)."""

    def seen(self, event_id: int) -> None:
        """Record a committed event id; wake every waiter when it is new."""
        if event_id > self.latest:
            self.latest = event_id
            self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def start(self) -> None:
        """Start the subscriber on the running loop (once)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._watch(), name="agentqueue-redis-watch"
            )

    async def wait(self, timeout: float, since: int) -> bool:
        """Return True at once if an event newer than `since` is known, else when one comes
        within `timeout` seconds."""
        self.start()
        if self.latest > since:
            return True
        changed = self._changed
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await changed.wait()
        except TimeoutError:
            return False
        return True

    async def _catch_up(self) -> None:
        """Read the event counter: everything up to it is committed (the scripts write both)."""
        newest = int(await self._client.call(lambda r: r.get(self._client.keys.next_event_id)) or 0)
        if newest < self.latest:
            # The server lost its data (a restart without persistence, a flush): ids start
            # again from 1, so wait for events from there (a write of this process racing the
            # read also lands here: a spurious wake-up, allowed).
            self.latest = newest
            self._wake()
        self.seen(newest)

    async def _watch(self) -> None:
        # A dedicated connection, subscribed to the channel and used for nothing else. No socket
        # timeout on it: redis-py bounds sends with `asyncio.wait_for` then, which on Python
        # 3.11 can swallow a cancellation; reads below have their own bound instead.
        redis = self._client.connect(dedicated=True)
        loop = asyncio.get_running_loop()
        pause = 0.05
        lost = False
        try:
            while True:
                try:
                    await redis.initialize()  # takes the connection once; it reconnects itself
                    conn = redis.connection
                    assert conn is not None
                    # Subscribed first, then the counter read: an event committed before the
                    # subscription took effect is in the counter, any later one in a message.
                    await conn.send_command("SSUBSCRIBE", self._client.keys.changes)
                    if await self._read(conn) is None:
                        raise TimeoutError(f"no reply to SSUBSCRIBE in {QUIET_S:.0f} s")
                    await self._catch_up()
                    self.live = True
                    if lost:
                        logger.info("event watcher reconnected to Redis at %s", self._client.where)
                        lost = False
                    pause = 0.05
                    await self._listen(conn, loop)
                except (RedisError, AgentQueueError, OSError, TimeoutError) as error:
                    self.live = False
                    if not lost:  # once per outage, not once per retry
                        logger.warning("event watcher lost Redis, retrying: %s", error)
                        lost = True
                    if redis.connection is not None:
                        # Reconnects on its next command, subscribed to nothing.
                        await redis.connection.disconnect(nowait=True)
                    self._wake()  # waiters re-check; a spurious wake-up is allowed
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 2.0)
        finally:
            self.live = False
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await redis.aclose()

    async def _listen(self, conn: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Take messages until the connection fails (raises)."""
        check_at = loop.time() + QUIET_S
        pinged = False
        while True:
            if await self._read(conn) is not None:
                pinged = False
            elif pinged:  # not even a reply to the PING: the connection is dead
                raise TimeoutError(f"no reply from Redis in {2 * QUIET_S:.0f} s")
            else:  # quiet for QUIET_S seconds
                await conn.send_command("PING")
                pinged = True
            if loop.time() >= check_at:
                # After a flush, ids start again below `latest`: no message would wake anyone.
                await self._catch_up()
                check_at = loop.time() + QUIET_S

    async def _read(self, conn: Any) -> Any:
        """Return the next reply or message (None: nothing within QUIET_S); a message announces
        a new event id."""
        reply = await conn.read_response(timeout=QUIET_S, push_request=True)
        # isinstance: with hiredis installed, redis-py hands pushes over as
        # `hiredis.PushNotification`, a list subclass.
        if isinstance(reply, list) and len(reply) == 3 and reply[0] in _MESSAGES:
            self.seen(int(reply[2]))
        return reply

    async def stop(self) -> None:
        """Cancel the blocking read and close its connection."""
        task, self._task = self._task, None
        # Cancel again until it ends: a cancellation that lands as a driver call completes
        # can be lost (Python 3.11), and close() must not hang on it.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if task is not None and not task.cancelled() and task.exception() is not None:
            logger.warning("event watcher ended with an error: %s", task.exception())
