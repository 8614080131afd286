"""Redis-only behaviour: one hash tag per prefix, isolated prefixes, the eviction warning,
scripts loaded once, blocking wake-ups across Queue objects, URL options and schema guards."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis._parsers import _AsyncRESP3Parser
from redis.crc import key_slot
from redis.exceptions import OutOfMemoryError

from agentqueue import BackendUnavailable, ConfigError, FrozenClock, Job, Queue, SchemaMismatch
from agentqueue.backends import backend_from_url
from agentqueue.backends.base import Lease, Outcome, OutcomeKind
from agentqueue.backends.redis import RedisBackend
from agentqueue.backends.redis.keys import parse_url
from agentqueue.errors import MissingExtra, StoreFull
from agentqueue.models import ErrorRecord, FailureReason, JobTypeInfo
from tests.conftest import REDIS_URL, eventually, fresh_name, redis_reachable, require_server

T0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def rq(redis_url: str) -> AsyncIterator[Queue]:
    async with Queue(redis_url) as queue:
        yield queue


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    """A plain client on the test server (for looking at keys and settings)."""
    require_server("Redis", redis_reachable(), REDIS_URL)
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


def backend_of(queue: Queue) -> RedisBackend:
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    return backend


async def fetch(queue: Queue, job_id: int) -> Job:
    job = await queue.get_job(job_id)
    assert job is not None
    return job


def prefix_of(queue: Queue) -> str:
    return backend_of(queue).options.prefix


async def full_lifecycle(queue: Queue, clock: FrozenClock) -> None:
    """Touch every kind of key: jobs of every fate, tags, keys, registry, events, rescue."""
    store = queue.backend
    await queue.add_jobs(
        [
            {"job_type": "mail", "queue": "q:1", "tags": ["a", "b"], "idempotency_key": "k"},
            {"job_type": "mail", "delay": 60},
            {"job_type": "resize", "priority": 5},
            {"job_type": "resize", "max_attempts": 1},
            {"job_type": "mail", "queue": "q:1"},
        ]
    )
    await store.publish_job_types([JobTypeInfo(name="mail")], now=clock.now())
    jobs = await store.claim(
        worker_id="w", queue=None, job_types=["resize"], limit=2, lease_seconds=30, now=T0
    )
    # Leases by the claimed attempt: a job rescued by an earlier round keeps its place and is
    # claimed again here, on its second attempt.
    held = Lease(jobs[0].id, jobs[0].attempts)
    await store.set_progress(worker_id="w", lease=held, progress=50, message="half", now=T0)
    await store.heartbeat(
        worker_id="w", leases=[Lease(j.id, j.attempts) for j in jobs], lease_seconds=30
    )
    error = ErrorRecord(attempt=1, at=T0, reason=FailureReason.HANDLER_ERROR, message="x")
    await store.finish(worker_id="w", outcomes=[Outcome(OutcomeKind.FAIL, held, error=error)])
    await queue.retry_job(jobs[0].id)
    first = await store.claim(
        worker_id="w", queue="q:1", job_types=None, limit=1, lease_seconds=30, now=T0
    )
    await store.finish(
        worker_id="w",
        outcomes=[
            Outcome(
                OutcomeKind.RETRY, Lease(first[0].id, first[0].attempts), error=error, retry_in=5
            )
        ],
    )
    pending = await queue.list_jobs(status="pending", queue="q:1")
    await queue.edit_job(pending.items[0].id, tags=["c"], queue="q:2", priority=3)
    await queue.cancel_job(pending.items[0].id)
    clock.advance(31)
    await store.rescue_expired(now=clock.now())
    await queue.stats()


async def keys_named_like(raw: aioredis.Redis, prefix: str) -> list[str]:
    return [key async for key in raw.scan_iter(match=f"*{prefix}*", count=1000)]


async def test_every_key_of_a_queue_carries_its_hash_tag_in_one_cluster_slot(
    redis_url: str, raw: aioredis.Redis
) -> None:
    clock = FrozenClock(T0)
    async with Queue(redis_url, clock=clock) as queue:
        await full_lifecycle(queue, clock)
        prefix = prefix_of(queue)
    found = await keys_named_like(raw, prefix)
    assert len(found) > 20
    assert all(key.startswith(f"{{{prefix}}}:") for key in found), found
    assert {key_slot(key.encode()) for key in found} == {key_slot(f"{{{prefix}}}".encode())}


async def test_two_prefixes_on_one_redis_do_not_see_each_other(redis_url: str) -> None:
    other = f"{REDIS_URL}?prefix={fresh_name('aqt')}"
    async with Queue(redis_url) as first, Queue(other) as second:
        try:
            a = await first.add_job("mail", idempotency_key="same")
            b = await second.add_job("mail", idempotency_key="same")
            assert a == b == 1  # each prefix counts its own ids
            await first.add_job("mail")
            assert sum((await first.stats()).totals.values()) == 2
            assert sum((await second.stats()).totals.values()) == 1
            claimed = await second.backend.claim(
                worker_id="w", queue=None, job_types=None, limit=10, lease_seconds=30
            )
            assert [job.id for job in claimed] == [b]
            assert (await fetch(first, a)).status == "pending"
            assert len(await first.backend.read_events(after=None, limit=10)) == 2
            assert len(await second.backend.read_events(after=None, limit=10)) == 2
        finally:
            await second.close()
            cleanup = redis.Redis.from_url(REDIS_URL)
            keys = list(cleanup.scan_iter(match=f"{{{prefix_of(second)}}}*"))
            if keys:
                cleanup.unlink(*keys)
            cleanup.close()


@pytest.fixture
def eviction_policy() -> Iterator[None]:
    """Set the shared server's maxmemory-policy to allkeys-lru for one test, then restore it."""
    require_server("Redis", redis_reachable(), REDIS_URL)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    original = client.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        client.config_set("maxmemory-policy", "allkeys-lru")
        yield
    finally:
        client.config_set("maxmemory-policy", original)
        client.close()


@pytest.mark.usefixtures("eviction_policy")
async def test_opening_warns_loudly_when_redis_may_evict_keys(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agentqueue.backends.redis"):
        async with Queue(redis_url) as queue:
            assert backend_of(queue).eviction_policy == "allkeys-lru"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "allkeys-lru" in warnings[0]
    assert "noeviction" in warnings[0]
    assert "lost" in warnings[0]


async def test_no_warning_under_noeviction_and_none_when_config_is_disabled(
    redis_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with caplog.at_level(logging.WARNING, logger="agentqueue.backends.redis"):
        async with Queue(redis_url) as queue:
            policy = backend_of(queue).eviction_policy
    if policy == "noeviction":
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    async def disabled(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise redis.ResponseError("ERR unknown command 'CONFIG'")

    monkeypatch.setattr(aioredis.Redis, "config_get", disabled)
    async with Queue(redis_url) as queue:
        assert backend_of(queue).eviction_policy is None
        assert await queue.add_job("still-works") == 1


class CommandLog:
    """Counts the commands a store's connections send, by name (the first of a pipeline)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, queue: Queue) -> None:
        self.names: list[str] = []
        client = backend_of(queue)._db.redis  # pyright: ignore[reportPrivateUsage]
        connection_class = client.connection_pool.connection_class
        original = connection_class.send_packed_command

        async def send_packed_command(
            connection: Any, command: Any, *args: Any, **options: Any
        ) -> Any:
            packed = command if isinstance(command, bytes) else b"".join(command)
            words = packed.split(b"\r\n")[2:5:2]  # *n, $len, NAME, $len, ARG
            name = words[0].decode().upper()
            self.names.append(
                f"{name} {words[1].decode().upper()}" if name in ("SCRIPT", "FUNCTION") else name
            )
            return await original(connection, command, *args, **options)

        monkeypatch.setattr(connection_class, "send_packed_command", send_packed_command)

    def count(self, name: str) -> int:
        return sum(1 for n in self.names if n == name)


async def test_scripts_are_loaded_once_and_then_called_by_name(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FrozenClock(T0)
    async with Queue(redis_url, clock=clock) as queue:
        log = CommandLog(monkeypatch, queue)
        await full_lifecycle(queue, clock)
        loads = log.count("FUNCTION LOAD")
        assert loads <= 10  # at most once per script (zero if the server knew them already)
        calls = log.count("FCALL")
        assert calls > 0
        for _ in range(3):
            await full_lifecycle(queue, clock)
        assert log.count("FUNCTION LOAD") == loads  # never again
        assert not {"EVAL", "EVALSHA", "SCRIPT LOAD"} & set(log.names)
        assert log.count("FCALL") > 3 * calls - loads


async def test_a_script_the_server_forgot_is_loaded_again(rq: Queue) -> None:
    client = backend_of(rq)._db  # pyright: ignore[reportPrivateUsage]
    library = client._scripts["insert"].function  # pyright: ignore[reportPrivateUsage]
    assert await rq.add_job("mail") == 1
    # As after a restart without persistence, or FUNCTION FLUSH.
    assert await client.call(lambda r: r.function_delete(library))
    assert await rq.add_job("mail") == 2
    assert await client.call(lambda r: r.function_list(library))


async def caught_up(watching: Queue, writer: Queue) -> None:
    """Wait until `watching` has seen every event `writer` wrote (tokens are then fresh)."""
    latest = int(await writer.backend.latest_event_cursor() or 0)

    async def seen() -> bool:
        return watching.backend.change_token() >= latest

    await eventually(seen, timeout=5)


async def test_a_waiter_wakes_within_100_ms_of_an_insert_by_another_queue_object(
    redis_url: str,
) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        store = worker_side.backend
        await producer.add_job("warm-up")  # connections and scripts ready
        await caught_up(worker_side, producer)
        for _ in range(3):
            token = store.change_token()
            waiter = asyncio.ensure_future(store.wait_for_change(5.0, since=token))
            await asyncio.sleep(0.05)
            assert not waiter.done(), "woke without a change"
            started = time.monotonic()
            await producer.add_job("hello")
            async with asyncio.timeout(1):
                assert await waiter is True
            assert time.monotonic() - started < 0.1


async def test_a_change_after_the_token_returns_at_once_and_a_quiet_wait_times_out(
    redis_url: str,
) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        store = worker_side.backend
        token = store.change_token()
        await producer.add_job("before-the-wait")
        async with asyncio.timeout(1):
            assert await store.wait_for_change(5.0, since=token) is True
        token = store.change_token()
        started = time.monotonic()
        assert await store.wait_for_change(0.2, since=token) is False
        assert 0.15 < time.monotonic() - started < 1.0


async def test_cancelled_waiters_leave_the_watcher_working_and_close_is_prompt(
    redis_url: str,
) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        store = worker_side.backend
        for _ in range(20):  # a worker cancels its idle wait every time it wakes
            waiter = asyncio.ensure_future(store.wait_for_change(5.0))
            await asyncio.sleep(0)
            waiter.cancel()
        token = store.change_token()
        waiter = asyncio.ensure_future(store.wait_for_change(5.0, since=token))
        await producer.add_job("hello")
        async with asyncio.timeout(1):
            assert await waiter is True
        async with asyncio.timeout(2):  # the watcher is blocked reading its channel right now
            await worker_side.close()


async def wake_on_insert(watching: Queue, producer: Queue) -> None:
    """An insert by `producer` wakes a waiter of `watching` within a second."""
    token = watching.backend.change_token()
    waiter = asyncio.ensure_future(watching.backend.wait_for_change(5.0, since=token))
    await asyncio.sleep(0.05)
    assert not waiter.done(), "woke without a change"
    await producer.add_job("hello")
    async with asyncio.timeout(1):
        assert await waiter is True


async def test_every_writing_script_announces_its_last_event_id_once(
    rq: Queue, raw: aioredis.Redis
) -> None:
    channel = backend_of(rq)._db.keys.changes  # pyright: ignore[reportPrivateUsage]
    listener = raw.pubsub()
    await listener.ssubscribe(channel)
    try:
        assert (await listener.get_message(timeout=1))["type"] == "ssubscribe"  # type: ignore[index]
        await rq.add_jobs([{"job_type": "x"}, {"job_type": "x"}, {"job_type": "y"}])
        await rq.backend.claim(worker_id="w", queue=None, job_types=None, limit=2, lease_seconds=30)
        await rq.backend.claim(
            worker_id="w", queue="none", job_types=None, limit=2, lease_seconds=30
        )
        announced = []
        while (message := await listener.get_message(timeout=0.5)) is not None:
            announced.append(int(message["data"]))
        # three `added` events in one script, then two `claim` events; the empty claim is quiet
        assert announced == [3, 5]
    finally:
        await listener.aclose()


async def test_a_quiet_watcher_pings_and_a_reset_counter_still_wakes_waiters(
    redis_url: str, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentqueue.backends.redis import events

    monkeypatch.setattr(events, "QUIET_S", 0.1)
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        await producer.add_jobs([{"job_type": "warm-up"}] * 5)
        await caught_up(worker_side, producer)
        await asyncio.sleep(0.5)  # several quiet periods: pinged, not replaced
        await wake_on_insert(worker_side, producer)
        # As after a flush or a restart without persistence: event ids start again from 1,
        # below what the watcher knows. Its periodic read of the counter notices.
        keys = backend_of(producer)._db.keys  # pyright: ignore[reportPrivateUsage]
        await raw.delete(keys.next_event_id, keys.events)
        await asyncio.sleep(0.5)
        assert worker_side.backend.change_token() == 0
        await wake_on_insert(worker_side, producer)


async def test_a_store_on_a_resp2_client_wakes_like_one_on_resp3(redis_url: str) -> None:
    mine = aioredis.Redis.from_url(REDIS_URL, protocol=2)
    try:
        backend = RedisBackend.from_client(mine, prefix=parse_url(redis_url).prefix)
        async with Queue(backend=backend) as worker_side, Queue(redis_url) as producer:
            await producer.add_job("warm-up")
            await caught_up(worker_side, producer)
            await wake_on_insert(worker_side, producer)
    finally:
        await mine.aclose()


async def test_the_watcher_reads_messages_from_either_reply_parser(rq: Queue) -> None:
    from agentqueue.backends.redis import events

    class PushNotification(list[Any]):
        """hiredis hands pushes over as a list subclass."""

    class Conn:
        def __init__(self, reply: Any) -> None:
            self.reply = reply

        async def read_response(self, **_options: Any) -> Any:
            return self.reply

    watcher = events.ChangeWatcher(backend_of(rq)._db, 0)  # pyright: ignore[reportPrivateUsage]
    await watcher._read(Conn(PushNotification(["smessage", "{p}:changes", "7"])))  # pyright: ignore[reportPrivateUsage]
    assert watcher.latest == 7
    await watcher._read(Conn(["message", "{p}:changes", "9"]))  # pyright: ignore[reportPrivateUsage]
    assert watcher.latest == 9


async def test_a_store_on_the_pure_python_reply_parser_wakes_like_one_on_hiredis(
    redis_url: str,
) -> None:
    mine = aioredis.Redis.from_url(REDIS_URL, parser_class=_AsyncRESP3Parser, protocol=3)
    try:
        backend = RedisBackend.from_client(mine, prefix=parse_url(redis_url).prefix)
        async with Queue(backend=backend) as worker_side, Queue(redis_url) as producer:
            await producer.add_job("warm-up")
            await caught_up(worker_side, producer)
            await wake_on_insert(worker_side, producer)
    finally:
        await mine.aclose()


async def test_next_due_after_a_claim_needs_no_round_trip_until_an_event_is_seen(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        store = worker_side.backend
        later = await fetch(producer, await producer.add_job("later", delay=60))
        await caught_up(worker_side, producer)
        log = CommandLog(monkeypatch, worker_side)  # counts every connection of this process
        assert (
            await store.claim(worker_id="w", queue=None, job_types=None, limit=1, lease_seconds=30)
            == []
        )
        assert log.names == ["FCALL"]
        assert await store.next_due(queue=None, job_types=None) == later.run_at
        assert log.names == ["FCALL"]  # the claim's reply carried it
        assert await store.next_due(queue="other", job_types=None) is None  # another filter
        assert len(log.names) == 2
        # A newer event (another process's insert): the claim's answer may be stale, ask again.
        sooner = await fetch(producer, await producer.add_job("sooner", delay=30))
        await caught_up(worker_side, producer)
        sent = len(log.names)
        assert await store.next_due(queue=None, job_types=None) == sooner.run_at
        assert len(log.names) == sent + 1


async def test_claims_filtered_by_several_job_types_keep_priority_order(rq: Queue) -> None:
    ids = await rq.add_jobs(
        [
            {"job_type": "a", "priority": 1},
            {"job_type": "b", "priority": 3},
            {"job_type": "c", "priority": 9},
            {"job_type": "a", "priority": 3},
            {"job_type": "b", "priority": 2},
        ]
    )
    jobs = await rq.backend.claim(
        worker_id="w", queue=None, job_types=["a", "b", "a"], limit=10, lease_seconds=30
    )
    assert [job.id for job in jobs] == [ids[1], ids[3], ids[4], ids[0]]


async def test_run_at_far_in_the_past_or_future_is_stored_exactly(rq: Queue) -> None:
    old = datetime(1960, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    far = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    a, b = await rq.add_jobs([{"job_type": "x", "run_at": old}, {"job_type": "x", "run_at": far}])
    assert (await fetch(rq, a)).run_at == old
    assert (await fetch(rq, b)).run_at == far
    jobs = await rq.backend.claim(
        worker_id="w", queue=None, job_types=None, limit=10, lease_seconds=30
    )
    assert [job.id for job in jobs] == [a]


async def test_lease_times_come_from_the_redis_clock(rq: Queue, raw: aioredis.Redis) -> None:
    await rq.add_job("x")
    (job,) = await rq.backend.claim(
        worker_id="w", queue=None, job_types=None, limit=1, lease_seconds=30
    )
    seconds, micros = await raw.time()
    server_now = datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=micros)
    assert job.started_at is not None
    assert abs((server_now - job.started_at).total_seconds()) < 1
    assert job.lease_expires_at == job.started_at + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://127.0.0.1:6379/0?colour=blue", "unknown Redis URL option 'colour'"),
        ("redis://127.0.0.1:6379/0?prefix=a{b}", "bad Redis key prefix"),
        ("redis://127.0.0.1:6379/0?prefix=", "bad Redis key prefix"),
        ("redis://127.0.0.1:6379/zero", "database number"),
        ("redis:///0", "bad Redis URL"),
    ],
)
def test_bad_url_options_are_refused(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        backend_from_url(url)


def test_url_options_are_read_and_driver_options_passed_on() -> None:
    options = parse_url("rediss://:secret@cache:6380/2?prefix=app.1&socket_connect_timeout=3")
    assert options.prefix == "app.1"
    assert options.url == "rediss://:secret@cache:6380/2?socket_connect_timeout=3"
    assert parse_url("redis://localhost").prefix == "aq"
    assert isinstance(backend_from_url("redis://localhost:6379/0"), RedisBackend)


def test_a_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a)
    )
    with pytest.raises(MissingExtra, match=r"pip install 'agentqueue\[redis\]'"):
        backend_from_url("redis://localhost:6379/0")


async def test_schema_versions_are_guarded_like_the_sql_stores(
    redis_url: str, raw: aioredis.Redis
) -> None:
    fresh = Queue(redis_url, migrate=False)
    with pytest.raises(SchemaMismatch, match="agentqueue migrate"):
        await fresh.open()
    assert await fresh.backend.migrate() == ["0001_initial"]
    assert await fresh.backend.migrate() == []
    await fresh.backend.close()
    await raw.set(f"{{{parse_url(redis_url).prefix}}}:schema", 99)
    newer = Queue(redis_url, migrate=False)
    with pytest.raises(SchemaMismatch, match="newer than this code"):
        await newer.open()
    await newer.backend.close()


async def test_an_unreachable_server_is_backend_unavailable() -> None:
    queue = Queue("redis://127.0.0.1:1/0")
    with pytest.raises(BackendUnavailable, match=r"cannot reach Redis at 127\.0\.0\.1:1"):
        await queue.open()
    await queue.backend.close()


async def test_paged_filtered_lists_match_an_oracle_across_index_batches(rq: Queue) -> None:
    specs = [
        {
            "job_type": "abc"[n % 3],
            "queue": "q1" if n % 4 else "q2",
            "tags": [t for t in ("x", "y") if n % (2 if t == "x" else 5) == 0],
        }
        for n in range(300)
    ]
    ids = await rq.add_jobs(specs)
    for job_id in ids[::7]:
        await rq.cancel_job(job_id)
    everything = {job_id: await fetch(rq, job_id) for job_id in ids}
    filters: list[dict[str, Any]] = [
        {},
        {"status": ["pending", "cancelled"]},
        {"status": "cancelled", "job_type": ["a", "c"]},
        {"queue": "q2", "tags": ["x"], "tag_mode": "all"},
        {"tags": ["x", "y"], "tag_mode": "any"},
        {"tags": ["x", "y"], "tag_mode": "exact"},
        {"tags": ["y"], "tag_mode": "none", "job_type": "b"},
    ]
    for filter_ in filters:
        for order in ("newest", "oldest"):
            seen: list[int] = []
            cursor = None
            while True:
                page = await rq.list_jobs(**filter_, order=order, limit=7, cursor=cursor)
                seen += [job.id for job in page.items]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            expected = sorted(
                (job.id for job in everything.values() if _oracle(job, filter_)),
                reverse=order == "newest",
            )
            assert seen == expected, (filter_, order)


def _oracle(job: Job, f: dict[str, Any]) -> bool:
    def listed(value: Any) -> list[Any]:
        return [value] if isinstance(value, str) else list(value)

    if "status" in f and job.status not in listed(f["status"]):
        return False
    if "job_type" in f and job.job_type not in listed(f["job_type"]):
        return False
    if "queue" in f and job.queue not in listed(f["queue"]):
        return False
    if "tags" in f:
        have, wanted = set(job.tags), set(f["tags"])
        mode = f["tag_mode"]
        return {
            "any": bool(have & wanted),
            "all": wanted <= have,
            "exact": have == wanted,
            "none": not have & wanted,
        }[mode]
    return True


def test_an_out_of_memory_refusal_is_store_full() -> None:
    from agentqueue.backends.redis.client import RedisClient

    client = RedisClient(parse_url("redis://127.0.0.1:6379/0"))
    error = client.translate(
        redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
    )
    assert isinstance(error, StoreFull)
    assert "out of memory" in error.message
    assert "nothing was written" in error.message
    # What redis-py really raises: the "OOM" code is parsed off into the exception's type.
    parsed = client.translate(
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    )
    assert isinstance(parsed, StoreFull)


async def test_a_queue_on_my_own_redis_client_uses_its_settings_and_leaves_it_open(
    redis_url: str,
) -> None:
    # Raw bytes replies and a socket timeout shorter than the watcher's blocking read: the
    # store must not depend on either.
    mine = aioredis.Redis.from_url(REDIS_URL, socket_timeout=1)
    try:
        backend = RedisBackend.from_client(mine, prefix=parse_url(redis_url).prefix)
        async with Queue(backend=backend) as queue, Queue(redis_url) as producer:
            await producer.add_job("warm-up")
            await caught_up(queue, producer)
            token = queue.backend.change_token()
            waiter = asyncio.ensure_future(queue.backend.wait_for_change(5.0, since=token))
            await asyncio.sleep(1.5)  # longer than my socket timeout
            assert not waiter.done()
            job_id = await producer.add_job("hello")
            async with asyncio.timeout(1):
                assert await waiter is True
            assert (await fetch(queue, job_id)).job_type == "hello"
        assert await mine.ping() is True  # still mine, still open
    finally:
        await mine.aclose()


def test_a_redis_client_becomes_a_store_with_the_default_prefix() -> None:
    from agentqueue.backends import backend_for

    client = aioredis.Redis(host="cache.internal", port=6380, db=3)
    backend = backend_for(client)
    assert isinstance(backend, RedisBackend)
    assert backend.options.prefix == "aq"
    with pytest.raises(ConfigError, match=r"redis\.asyncio\.Redis"):
        RedisBackend.from_client(redis.Redis())
    with pytest.raises(ConfigError, match="bad Redis key prefix"):
        RedisBackend.from_client(client, prefix="{x}")


async def test_after_its_connections_are_killed_the_store_reconnects_and_wakes_waiters(
    redis_url: str, raw: aioredis.Redis
) -> None:
    async with Queue(redis_url) as worker_side, Queue(redis_url) as producer:
        await producer.add_job("warm-up")
        await caught_up(worker_side, producer)
        names = {
            f"agentqueue:{prefix_of(worker_side)}",
            f"agentqueue:{prefix_of(worker_side)}:watch",
        }

        async def mine() -> list[str]:
            return [c["id"] for c in await raw.client_list() if c.get("name") in names]

        killed = await eventually(mine, timeout=5)  # only this test's own connections
        for client_id in killed:
            await raw.client_kill_filter(_id=client_id)
        token = worker_side.backend.change_token()
        waiter = asyncio.ensure_future(worker_side.backend.wait_for_change(5.0, since=token))
        job_id = await producer.add_job("after-the-drop")

        async def woken() -> bool:
            if waiter.done():
                return True
            await producer.add_job("nudge")  # a spurious wake on reconnect is allowed too
            return False

        await eventually(woken, timeout=5, interval=0.2)
        assert (await fetch(worker_side, job_id)).status == "pending"


async def test_a_burst_of_concurrent_calls_waits_for_connections_instead_of_failing(
    rq: Queue,
) -> None:
    ids = await asyncio.gather(*(rq.add_job("burst", {"n": n}) for n in range(300)))
    assert sorted(ids) == list(range(1, 301))
