"""Live event streams over a real HTTP server, fed by a worker in another process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agentqueue import Queue
from agentqueue.api import ApiSettings, create_app
from tests.acceptance import ledger
from tests.acceptance.checks import check_progress_seen
from tests.acceptance.procs import Env, kill_all
from tests.api.conftest import live_server
from tests.api.sse import Message, messages

pytestmark = pytest.mark.slow


@pytest.fixture
async def served(shared_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, Queue, Env]]:
    """A live API server on a fresh shared store, and a launcher for worker processes."""
    ledger_path = tmp_path / "ledger.db"
    ledger.create(str(ledger_path))
    env = Env(shared_url, str(ledger_path), tmp_path, [])
    queue = Queue(shared_url)
    app = create_app(queue, settings=ApiSettings(dashboard=False))
    try:
        async with live_server(app) as base:
            yield base, queue, env
    finally:
        kill_all(env.started)


async def collect(response: httpx.Response, count: int, timeout: float = 20) -> list[Message]:
    """The next `count` messages of a stream (fails after `timeout` seconds)."""
    found: list[Message] = []

    async def read() -> None:
        async for message in messages(response):
            found.append(message)
            if len(found) == count:
                return

    await asyncio.wait_for(read(), timeout)
    return found


async def test_a_job_stream_shows_progress_from_a_worker_process(
    served: tuple[str, Queue, Env],
) -> None:
    base, _, env = served
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        added = await client.post("/api/v1/jobs", json={"job_type": "progress", "payload": {}})
        job_id = added.json()["id"]
        snapshots: list[dict[str, object]] = []
        kinds: list[str] = []
        reported: list[object] = []
        async with client.stream("GET", f"/api/v1/jobs/{job_id}/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            # The stream is open before any worker runs: everything after is live.
            worker = env.start("--concurrency", "2")

            async def follow() -> None:
                # The server ends the stream once the job ended and nothing follows.
                async for message in messages(response):
                    kinds.append(message.event)
                    if message.event == "snapshot":
                        snapshots.append(message.data)
                    elif message.event == "progress":
                        reported.append(message.data["data"]["progress"])

            await asyncio.wait_for(follow(), 30)
        assert worker.process.poll() is None
    assert snapshots[0]["status"] == "pending"
    # Each progress event carries its value; a snapshot shows the job as it is when sent.
    check_progress_seen(reported)
    progress = [s["progress"] for s in snapshots]
    assert progress == sorted(progress)
    assert snapshots[-1]["output"] == {"steps": 4}
    assert kinds[1:4] == ["claim", "snapshot", "progress"]
    assert kinds[-2:] == ["complete", "snapshot"]


async def test_the_event_feed_resumes_after_last_event_id_without_gaps(
    served: tuple[str, Queue, Env],
) -> None:
    base, _, _ = served
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        first = await client.post("/api/v1/jobs", json={"job_type": "a", "tags": ["x"]})
        cursor = (await client.get(f"/api/v1/jobs/{first.json()['id']}/events")).json()[-1][
            "cursor"
        ]
        for n in range(3):
            await client.post("/api/v1/jobs", json={"job_type": "a", "payload": {"n": n}})
        async with client.stream("GET", "/api/v1/events", headers={"Last-Event-ID": cursor}) as r:
            got = await collect(r, 2)
        assert [m.data["type"] for m in got] == ["added", "added"]
        last = got[-1].id
        assert last is not None
        await client.post("/api/v1/jobs", json={"job_type": "a", "payload": {"n": 3}})
        async with client.stream("GET", "/api/v1/events", headers={"Last-Event-ID": last}) as r:
            resumed = await collect(r, 2)
        payload_ids = [m.data["job_id"] for m in [*got, *resumed]]
        assert payload_ids == [2, 3, 4, 5]  # each added event once, in order
        bad = await client.get("/api/v1/events", headers={"Last-Event-ID": "not-a-cursor!"})
        assert bad.status_code == 422


async def test_the_event_feed_filters_by_job_type_and_tag(served: tuple[str, Queue, Env]) -> None:
    base, _, _ = served
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        add = await client.post("/api/v1/jobs", json={"job_type": "seed"})
        cursor = (await client.get(f"/api/v1/jobs/{add.json()['id']}/events")).json()[-1]["cursor"]
        await client.post("/api/v1/jobs", json={"job_type": "a", "tags": ["keep"]})
        await client.post("/api/v1/jobs", json={"job_type": "b", "tags": ["keep"]})
        await client.post("/api/v1/jobs", json={"job_type": "a", "tags": ["drop"]})
        await client.post("/api/v1/jobs", json={"job_type": "a", "tags": ["keep", "more"]})
        params = [("job_type", "a"), ("tag", "keep"), ("after", cursor)]
        async with client.stream("GET", "/api/v1/events", params=params) as response:
            got = await collect(response, 2)
    assert [m.data["job_id"] for m in got] == [2, 5]
