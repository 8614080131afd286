"""Shared fixtures: every behaviour test runs on every store through the `queue` fixture."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from agentqueue import FrozenClock, Queue

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_URL = os.environ.get(
    "AGENTQUEUE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("AGENTQUEUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Each store the conformance suite runs on. "sqlite" is a real file (multi-connection and
# multi-process behave as in production); "memory" is the in-memory store; "postgres" and
# "redis" are the machine's real servers, each test in its own schema / key prefix.
STORES = ["sqlite", "memory", "postgres", "redis"]


def require(available: bool, message: str) -> None:
    """Skip a test whose server or tool is missing, except in CI, where that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{message} (CI must run every test)")
    pytest.skip(message)


def require_server(kind: str, reachable: bool, url: str) -> None:
    """Skip a test whose server is down, except in CI, where a missing server is a failure."""
    require(reachable, f"{kind} server not reachable at {url}")


def fresh_name(prefix: str) -> str:
    """A unique lowercase name for a test's schema or key prefix."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def make_store_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return a fresh, isolated URL of one store kind."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    if kind == "memory":
        return "memory://"
    fixture = {"postgres": "postgres_url", "redis": "redis_url"}[kind]
    return request.getfixturevalue(fixture)


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, isolated store URL, one per store kind."""
    return make_store_url(request.param, request, tmp_path)


@pytest.fixture(params=[kind for kind in STORES if kind != "memory"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL that several Queue objects (or processes) can open at once."""
    return make_store_url(request.param, request, tmp_path)


def run_aside(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion on its own loop in a helper thread.

    Fixtures need it: some run inside a test's event loop, where `asyncio.run` is refused.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()  # type: ignore[arg-type]


@functools.cache
def postgres_reachable() -> bool:
    """Whether the test PostgreSQL server answers (checked once per session)."""

    async def probe() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await conn.close()

    try:
        run_aside(probe)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL server, dropped after the test."""
    require_server("PostgreSQL", postgres_reachable(), POSTGRES_URL)
    schema = fresh_name("aqt_")
    yield f"{POSTGRES_URL}?schema={schema}"

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    run_aside(drop)


@functools.cache
def redis_reachable() -> bool:
    """Whether the test Redis server answers (checked once per session)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError:
        return False
    finally:
        client.close()
    return True


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A fresh key prefix on the test Redis server; its keys are deleted after the test."""
    require_server("Redis", redis_reachable(), REDIS_URL)
    prefix = fresh_name("aqt")
    yield f"{REDIS_URL}?prefix={prefix}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        # Only this test's keys: every key of a prefix starts with its hash tag.
        keys = list(client.scan_iter(match=f"{{{prefix}}}*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
    finally:
        client.close()


@pytest.fixture
async def queue(store_url: str) -> AsyncIterator[Queue]:
    """An opened, migrated queue on a fresh store."""
    async with Queue(store_url) as opened:
        yield opened


@pytest.fixture
def clock() -> FrozenClock:
    """The frozen time every queue of a test shares."""
    return FrozenClock()


@pytest.fixture
async def timed(store_url: str, clock: FrozenClock) -> AsyncIterator[Queue]:
    """An opened queue on a fresh store, on the frozen `clock`."""
    async with Queue(store_url, clock=clock) as opened:
        yield opened


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file URL (for tests that need a store shared with other processes)."""
    return f"sqlite:///{tmp_path / 'shared.db'}"


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.01
) -> Any:
    """Poll `check` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")
        await asyncio.sleep(interval)
