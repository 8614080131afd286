"""Reliability scenario 5: an enqueue that committed but raised to its caller, retried with the
same idempotency key, gives exactly one job.

Two real ways to get the ambiguous outcome:

- **The reply is lost on the wire** (PostgreSQL, Redis): the queue talks to its server through a
  small TCP proxy that forwards everything until it is armed, then lets the server's answer to
  the commit (PostgreSQL's `COMMIT` command-complete message) or to the insert script (Redis'
  FCALL reply) go unforwarded and cuts the connection. The server has the job; the caller
  gets `BackendUnavailable`.
- **The caller gives up while the store commits** (every store): `asyncio.wait_for` around
  `add_job` with timeouts swept across the call's duration, so some calls are cancelled after
  their write went out (SQLite's writer thread, a PostgreSQL COMMIT in flight, a Redis script
  sent) and others before.

Either way the caller retries with the same key and must get the one job there is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import pytest

from agentqueue import Queue
from agentqueue.errors import BackendUnavailable
from tests.acceptance.procs import all_jobs
from tests.reliability.figures import record

PG_COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"
"""PostgreSQL's CommandComplete message for COMMIT: the transaction is durable once it is sent."""


class CuttingProxy:
    """A loopback TCP proxy that, when armed, swallows the first server reply `cut_here` picks
    and closes that client connection: the server did the work, the client never hears of it.

    `cut_here(reply, last_request)` sees each chunk from the server and the last chunk the same
    client sent. It runs in the test's own event loop.
    """

    def __init__(self, target: tuple[str, int], cut_here: Callable[[bytes, bytes], bool]) -> None:
        self.target = target
        self.cut_here = cut_here
        self.armed = False
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        server_r, server_w = await asyncio.open_connection(*self.target)
        last_request = [b""]

        async def upstream() -> None:
            while data := await client_r.read(65536):
                last_request[0] = data
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if self.armed and self.cut_here(data, last_request[0]):
                    self.armed = False
                    self.cuts += 1
                    return  # the reply is dropped: both sides are closed below
                client_w.write(data)
                await client_w.drain()

        try:
            pumps = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pending:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for writer in (client_w, server_w):
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            self._tasks.discard(task)


def pg_commit_reply(reply: bytes, _request: bytes) -> bool:
    """The server's reply says COMMIT: it is durable."""
    return PG_COMMIT_DONE in reply


def redis_script_reply(_reply: bytes, request: bytes) -> bool:
    """A reply to a script call (every Redis write is one script; the insert is the first)."""
    return b"FCALL" in request


def through(url: str, port: int) -> str:
    """`url` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    netloc = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{port}"))


@contextlib.asynccontextmanager
async def proxied(url: str) -> AsyncIterator[tuple[Queue, CuttingProxy]]:
    """A queue on `url` whose connections all pass through a `CuttingProxy`."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    rule = pg_commit_reply if parts.scheme.startswith("postgres") else redis_script_reply
    async with (
        CuttingProxy((parts.hostname, parts.port or 0), rule) as proxy,
        Queue(through(url, proxy.port)) as queue,
    ):
        yield queue, proxy


async def keyed(queue: Queue, key: str) -> list[int]:
    """The ids of every job holding the idempotency key."""
    return [job.id for job in await all_jobs(queue) if job.idempotency_key == key]


@pytest.mark.parametrize("kind", ["postgres", "redis"])
async def test_a_commit_whose_reply_is_lost_gives_one_job_on_retry(
    kind: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"{kind}_url")
    rounds = 5
    raised = ambiguous = 0
    async with proxied(url) as (queue, proxy), Queue(url) as direct:
        for n in range(rounds):
            key = f"order-{n}"
            proxy.armed = True
            try:
                first = await queue.add_job("charge", {"n": n}, idempotency_key=key, tags=["t"])
            except BackendUnavailable:
                raised += 1
                first = None
            assert proxy.cuts == n + 1, "the proxy never saw the commit's reply"
            stored = await keyed(direct, key)
            ambiguous += first is None and len(stored) == 1
            # The caller's retry, on the same queue (its pool reconnects), with the same key.
            retried = await queue.add_job("charge", {"n": n}, idempotency_key=key, tags=["t"])
            assert await keyed(direct, key) == [int(retried)]
            assert stored == [int(retried)], "the lost reply's job is the one the retry finds"
            assert retried.created is False
            if first is not None:
                assert int(first) == int(retried)
            events = [e.type for e in await direct.get_job_events(int(retried))]
            assert events == ["added"]
            job = await direct.get_job(int(retried))
            assert job is not None
            assert (job.tags, job.payload) == (["t"], {"n": n})
    assert raised == rounds, "a lost commit reply must reach the caller as BackendUnavailable"
    record(
        "5-enqueue-lost-commit-reply",
        kind,
        rounds=rounds,
        raised_to_caller=raised,
        committed_anyway=ambiguous,
        jobs_per_key=1,
        duplicates=0,
    )


async def test_a_caller_that_gives_up_mid_commit_gets_the_one_job_on_retry(
    store_url: str,
) -> None:
    """Timeouts from 0 to about twice an add_job's duration: cancelled before the write,
    during it, or after the commit; the retry with the key always finds exactly one job."""
    async with Queue(store_url) as queue:
        await queue.add_job("warm-up")
        started = time.perf_counter()
        for _ in range(5):
            await queue.add_job("warm-up")
        typical = (time.perf_counter() - started) / 5
        rounds = 40
        cancelled = committed_anyway = 0
        for n in range(rounds):
            key = f"cancel-{n}"
            timeout = typical * 2 * n / rounds
            try:
                await asyncio.wait_for(
                    queue.add_job("charge", {"n": n}, idempotency_key=key), timeout
                )
            except TimeoutError:
                cancelled += 1
                # Whatever the cancelled call left running finishes before the retry's answer
                # (one writer per SQLite store; the server orders the rest).
                retried = await queue.add_job("charge", {"n": n}, idempotency_key=key)
                committed_anyway += not retried.created
            else:
                retried = await queue.add_job("charge", {"n": n}, idempotency_key=key)
                assert retried.created is False
            assert await keyed(queue, key) == [int(retried)]
            events = [e.type for e in await queue.get_job_events(int(retried))]
            assert events == ["added"]
        keys = [job.idempotency_key for job in await all_jobs(queue) if job.job_type == "charge"]
        assert len(keys) == len(set(keys)) == rounds
    record(
        "5-enqueue-caller-timeout",
        store_url.split(":", 1)[0],
        rounds=rounds,
        cancelled=cancelled,
        committed_after_cancel=committed_anyway,
        jobs_per_key=1,
        duplicates=0,
    )
