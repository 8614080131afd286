"""A restarted Redis accepts connections at once but answers LOADING to every command until it
has read its data back. Each kind of store call (a script, a read, the claim's blocking wait,
and a `Queue` opening) waits that out and then runs; with a bound shorter than the loading,
it fails with a clear error and runs nothing.

The server is a private one (`servers.private_redis`) with `key-load-delay`, Redis' own knob for
slowing a load down, so a small dataset takes about a second to load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from agentqueue import Queue
from agentqueue.backends.redis import RedisBackend
from agentqueue.backends.redis.client import RedisClient
from agentqueue.backends.redis.keys import parse_url
from agentqueue.errors import BackendUnavailable
from tests.conftest import fresh_name
from tests.reliability.servers import PrivateRedis, private_redis

LOAD_DELAY_US = 60
"""Microseconds Redis sleeps per key it loads (about 130 µs a key with the timer's slack)."""


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    """A private Redis (AOF, fsync always) that loads slowly."""
    with private_redis("--key-load-delay", str(LOAD_DELAY_US)) as private:
        yield private


def add_ballast(server: PrivateRedis, keys: int) -> None:
    """Write `keys` keys, so a load takes about `keys` x 130 µs.

    Single commands, not one script: Redis answers nobody while it replays one transaction (a
    script's writes), so the test would see a stall, not LOADING. While loading, it answers
    between batches of 1,024 commands.
    """
    admin = _admin(server)
    try:
        pipe = admin.pipeline(transaction=False)
        for n in range(1, keys + 1):
            pipe.set(f"ballast:{n}", n)
        pipe.execute()
    finally:
        admin.close()


def _admin(server: PrivateRedis) -> redis.Redis:
    # No retries: the precondition check must see LOADING, not ride it out.
    return redis.Redis.from_url(server.url, retry=Retry(NoBackoff(), 0))


async def restart_and_confirm_loading(server: PrivateRedis) -> None:
    """SIGKILL and restart the server; check it is still loading (else the test proves
    nothing)."""
    server.kill()
    # The event loop's turn in which pooled connections see the server close them, as an app
    # between calls does (a call racing the kill itself fails: its script may have run).
    await asyncio.sleep(0.05)
    server.start()
    admin = _admin(server)
    try:
        with pytest.raises(redis.exceptions.BusyLoadingError):
            admin.get("ballast:1")
    finally:
        admin.close()


def _store(queue: Queue) -> RedisBackend:
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    return backend


async def test_every_kind_of_call_waits_for_a_restarted_redis_to_load(
    server: PrivateRedis,
) -> None:
    add_ballast(server, 10_000)  # about 1.3 s of loading: shorter than a call's 5 s bound
    url = f"{server.url}?prefix={fresh_name('aql')}"
    async with Queue(url) as queue:
        pending = await queue.add_job("kept", {"n": 1})

        await restart_and_confirm_loading(server)
        written = await queue.add_job("written-while-loading")  # a script
        assert (await queue.get_job(written)).job_type == "written-while-loading"

        await restart_and_confirm_loading(server)
        read = await queue.get_job(pending)  # a read
        assert read.payload == {"n": 1}

        await restart_and_confirm_loading(server)
        store = _store(queue)
        claimed = await store.claim_after_change(  # the blocking wait, then the claim script
            worker_id="w",
            queue=None,
            job_types=["kept"],
            limit=5,
            lease_seconds=30,
            since=0,
            timeout=5,
            interrupt=asyncio.Event(),
        )
        assert [job.id for job in claimed] == [pending]

    await restart_and_confirm_loading(server)
    async with Queue(url) as reopened:  # opening checks and migrates the schema: reads
        assert (await reopened.get_job(written)).status == "pending"


async def test_a_bound_shorter_than_the_loading_fails_clearly_and_runs_nothing(
    server: PrivateRedis,
) -> None:
    add_ballast(server, 40_000)  # about 5 s of loading
    await restart_and_confirm_loading(server)
    client = RedisClient(parse_url(f"{server.url}?prefix={fresh_name('aql')}"))
    # Longer than one reply takes while loading (under 1 s), shorter than the load.
    client.timeout = 2.0
    try:
        with pytest.raises(BackendUnavailable, match="still loading its data"):
            await client.call(lambda r: r.set("written-while-loading", "1"))
    finally:
        await client.close()
    admin = _admin(server)
    try:
        for _ in range(300):  # until the load is over
            try:
                admin.ping()
                break
            except redis.exceptions.BusyLoadingError:
                await asyncio.sleep(0.1)
        assert admin.get("written-while-loading") is None, "a refused call was run"
        assert admin.get("ballast:1") == b"1"
    finally:
        admin.close()
